//! Server-provided DPoP nonces (RFC 9449 §8 and §9) that need no storage.
//!
//! A nonce names a time window and carries an HMAC-SHA-256 tag over it, keyed with a secret
//! the server holds in memory: `<window>.<tag>` in base64url. The server accepts the nonce
//! of the current window and of the one before, so a client that has just been handed a
//! nonce can use it for at least one whole window. A restart with a new secret makes old
//! nonces fail, and clients retry with the nonce the refusal carries, as §8 describes.
//!
//! Nonces limit how long a proof made in advance stays usable: a proof must carry a nonce
//! from a recent window, which an attacker who stole proofs earlier cannot know.

use aws_lc_rs::hmac;

use crate::UnixTime;

/// The bytes of the tag kept in a nonce: 128 bits.
const TAG_LEN: usize = 16;

/// Mints and checks nonces for one server.
pub struct NonceKey {
    key: hmac::Key,
    window: u64,
}

impl std::fmt::Debug for NonceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NonceKey")
            .field("window", &self.window)
            .finish_non_exhaustive()
    }
}

impl NonceKey {
    /// A nonce key from a random `secret`, with windows of `window` seconds (at least 1).
    pub fn new(secret: &[u8; 32], window: u64) -> NonceKey {
        NonceKey {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
            window: window.max(1),
        }
    }

    fn window_of(&self, now: UnixTime) -> u64 {
        now.as_secs() / self.window
    }

    fn tag(&self, window: u64) -> Vec<u8> {
        let tag = hmac::sign(&self.key, &window.to_be_bytes());
        tag.as_ref().get(..TAG_LEN).unwrap_or_default().to_vec()
    }

    /// The nonce to hand out at `now`.
    pub fn current(&self, now: UnixTime) -> String {
        let window = self.window_of(now);
        format!(
            "{}.{}",
            writ_jose::base64url_encode(window.to_be_bytes()),
            writ_jose::base64url_encode(self.tag(window))
        )
    }

    /// Whether `nonce` was minted by this key for the current window or the one before.
    pub fn accepts(&self, nonce: &str, now: UnixTime) -> bool {
        let Some((window, tag)) = nonce.split_once('.') else {
            return false;
        };
        let (Ok(window), Ok(tag)) = (
            writ_jose::base64url_decode(window),
            writ_jose::base64url_decode(tag),
        ) else {
            return false;
        };
        let Ok(window) = <[u8; 8]>::try_from(window.as_slice()).map(u64::from_be_bytes) else {
            return false;
        };
        let current = self.window_of(now);
        if window != current && window.checked_add(1) != Some(current) {
            return false;
        }
        // Compare in constant time: the tag is a secret-keyed MAC.
        let expected = self.tag(window);
        tag.len() == TAG_LEN
            && aws_lc_rs::constant_time::verify_slices_are_equal(&expected, &tag).is_ok()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]

    use super::*;

    #[test]
    fn a_nonce_is_good_for_its_window_and_the_next_only() {
        let key = NonceKey::new(&[7; 32], 60);
        let at = |seconds: u64| UnixTime::from_secs(1_800_000_000 + seconds);
        let nonce = key.current(at(0));
        assert!(key.accepts(&nonce, at(0)));
        assert!(key.accepts(&nonce, at(60)));
        assert!(!key.accepts(&nonce, at(120)), "two windows later");
        let other = NonceKey::new(&[8; 32], 60);
        assert!(!other.accepts(&nonce, at(0)), "another server's secret");
        let (window, tag) = nonce.split_once('.').unwrap();
        let mut forged = writ_jose::base64url_decode(tag).unwrap();
        forged[0] ^= 1;
        let forged = format!("{window}.{}", writ_jose::base64url_encode(&forged));
        assert!(!key.accepts(&forged, at(0)));
        for garbage in ["", ".", "abc", "AAAAAAAAAAA.AAAA", &format!("{window}.")] {
            assert!(!key.accepts(garbage, at(0)), "{garbage:?}");
        }
    }
}
