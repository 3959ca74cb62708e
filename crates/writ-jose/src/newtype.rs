//! A macro for string newtypes whose constructor checks their form, shared by the crates
//! that name things in tokens and grants.

/// Defines `pub struct $name(String)` whose only constructor, `new`, accepts text for which
/// `$valid` holds and otherwise returns `$error { kind, value, rule }` (the error type must
/// have those three fields: `&'static str`, `String`, `&'static str`). The type serializes
/// as a string and checks its form when deserialized.
#[macro_export]
macro_rules! checked_string {
    ($(#[$doc:meta])* $name:ident, $error:ident, $kind:literal, $rule:expr, $valid:expr) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Checks `text` and wraps it.
            pub fn new(text: impl Into<String>) -> Result<Self, $error> {
                let text = text.into();
                let valid: fn(&str) -> bool = $valid;
                if valid(&text) {
                    Ok($name(text))
                } else {
                    Err($error {
                        kind: $kind,
                        value: text.chars().take(80).collect(),
                        rule: $rule,
                    })
                }
            }

            /// The text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = $error;
            fn try_from(text: String) -> Result<Self, $error> {
                $name::new(text)
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.0
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl ::std::fmt::Debug for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }
    };
}
