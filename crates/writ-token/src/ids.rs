//! Identifiers carried in tokens.

use writ_jose::{base64url_decode, base64url_encode};

/// An identifier was refused.
///
/// The caller's input is at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} `{value}`: {rule}")]
pub struct IdError {
    kind: &'static str,
    value: String,
    rule: &'static str,
}

writ_jose::checked_string!(
    /// A human's inventory id: the `sub` of every mandate and writ.
    HumanId,
    IdError,
    "human id",
    "expected 1 to 128 characters from A-Z, a-z, 0-9, `.`, `_`, `-`, `@`, `+`, `:`",
    |text| !text.is_empty()
        && text.len() <= 128
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-@+:".contains(&b))
);

writ_jose::checked_string!(
    /// An `iss` or `aud` value: an `https` URL, or `http` on a loopback host for development.
    Audience,
    IdError,
    "issuer or audience",
    "expected an https URL (http only for localhost) of at most 512 characters",
    |text| text.len() <= 512 && text.bytes().all(|b| b.is_ascii_graphic()) && is_https_or_loopback(text)
);

fn is_https_or_loopback(text: &str) -> bool {
    let Ok(url) = url::Url::parse(text) else {
        return false;
    };
    let loopback = match url.host() {
        Some(url::Host::Domain(domain)) => domain == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    url.username().is_empty()
        && url.password().is_none()
        && url.fragment().is_none()
        && (url.scheme() == "https" || (url.scheme() == "http" && loopback))
        && url.host().is_some()
}

/// An `iss` value is an [`Audience`]-shaped URL: the issuer's own identifier.
pub type Issuer = Audience;

/// Whether `text` is `prefix` followed by 22 characters of base64url encoding 16 bytes.
fn is_token_id(text: &str, prefix: &str) -> bool {
    text.strip_prefix(prefix)
        .filter(|rest| rest.len() == 22)
        .and_then(|rest| base64url_decode(rest).ok())
        .is_some_and(|bytes| bytes.len() == 16)
}

macro_rules! token_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal, $kind:literal) => {
        writ_jose::checked_string!(
            $(#[$doc])*
            $name,
            IdError,
            $kind,
            concat!("expected `", $prefix, "` and 22 base64url characters"),
            |text| is_token_id(text, $prefix)
        );

        impl $name {
            /// An id from 16 random bytes (128 bits of entropy).
            pub fn from_random(bytes: [u8; 16]) -> Self {
                $name(format!("{}{}", $prefix, base64url_encode(bytes)))
            }

            /// Parses an id: the prefix, then 22 characters of base64url (16 bytes).
            pub fn parse(text: &str) -> Result<Self, IdError> {
                $name::new(text)
            }
        }
    };
}

token_id!(
    /// A mandate's `jti`: `mnd_` and 22 base64url characters.
    MandateId,
    "mnd_",
    "mandate id"
);

token_id!(
    /// A writ's `jti`: `wrt_` and 22 base64url characters.
    WritId,
    "wrt_",
    "writ id"
);

token_id!(
    /// An approval the issuer holds a drifting call for: `apr_` and 22 base64url characters.
    ApprovalId,
    "apr_",
    "approval id"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_ids_round_trip_and_check_prefix() {
        let id = MandateId::from_random([9; 16]);
        assert!(id.as_str().starts_with("mnd_"));
        assert_eq!(MandateId::parse(id.as_str()).unwrap(), id);
        assert!(WritId::parse(id.as_str()).is_err());
        assert!(MandateId::parse("mnd_short").is_err());
        assert!(
            MandateId::parse("mnd_AAAAAAAAAAAAAAAAAAAAAB").is_err(),
            "stray bits"
        );
    }

    #[test]
    fn audiences_must_be_https_or_loopback() {
        assert!(Audience::new("https://issuer.example").is_ok());
        assert!(Audience::new("http://127.0.0.1:8080").is_ok());
        assert!(Audience::new("http://issuer.example").is_err());
        assert!(Audience::new("http://localhost.evil.example").is_err());
        assert!(Audience::new("https://user@issuer.example").is_err());
        assert!(Audience::new("https://a b").is_err());
        assert!(HumanId::new("alice@example.com").is_ok());
        assert!(HumanId::new("").is_err());
        assert!(HumanId::new("a b").is_err());
    }
}
