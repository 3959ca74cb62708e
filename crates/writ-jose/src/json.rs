//! JSON that refuses duplicate member names.
//!
//! RFC 7515 §5.2 and RFC 8259 §4 leave duplicate member names to the parser; parsers differ
//! (first wins, last wins, error), which is a classic source of verifier confusion. Writ
//! refuses them at every depth before deserializing into typed claims.

use std::borrow::Cow;
use std::cell::RefCell;
use std::fmt;

use serde::de::{
    self, DeserializeOwned, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor,
};

/// JSON could not be read strictly.
///
/// The input is at fault: it is not JSON, has a duplicate member name, or does not have the
/// expected shape.
#[derive(Debug, thiserror::Error)]
pub enum JsonError {
    /// An object has the same member name twice.
    #[error("duplicate JSON member `{0}`")]
    DuplicateMember(String),
    /// The text is not JSON, or not of the expected shape.
    #[error("invalid JSON: {0}")]
    Invalid(#[source] serde_json::Error),
}

/// Sorts the members of every object in `value`, recursively, so that its serialization is
/// the same whichever `serde_json` features the build enables (`preserve_order` keeps
/// insertion order; without it members are sorted already).
pub fn sort_members(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(members) => {
            members.sort_keys();
            members.values_mut().for_each(sort_members);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(sort_members),
        _ => {}
    }
}

/// Deserializes `bytes` into `T` after checking that no object anywhere in it repeats a
/// member name.
pub fn from_slice_strict<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, JsonError> {
    check_no_duplicates(bytes)?;
    serde_json::from_slice(bytes).map_err(JsonError::Invalid)
}

fn check_no_duplicates(bytes: &[u8]) -> Result<(), JsonError> {
    let duplicate = RefCell::new(None);
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let walked = NoDuplicates(&duplicate)
        .deserialize(&mut deserializer)
        .and_then(|()| deserializer.end());
    match (walked, duplicate.into_inner()) {
        (_, Some(name)) => Err(JsonError::DuplicateMember(name)),
        (Err(error), None) => Err(JsonError::Invalid(error)),
        (Ok(()), None) => Ok(()),
    }
}

/// Walks any JSON value, recording the first repeated member name and stopping there.
#[derive(Clone, Copy)]
struct NoDuplicates<'a>(&'a RefCell<Option<String>>);

impl<'de> DeserializeSeed<'de> for NoDuplicates<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for NoDuplicates<'_> {
    type Value = ();

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(self)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        // Token objects have a handful of members: a linear scan over keys borrowed from
        // the input beats hashing. Past `LINEAR_MEMBERS` the keys move to a hash set, so a
        // large object (a request body, a JWKS) costs linear time, not quadratic.
        const LINEAR_MEMBERS: usize = 16;
        let mut few: Vec<Cow<'de, str>> = Vec::new();
        let mut many: std::collections::HashSet<Cow<'de, str>> = std::collections::HashSet::new();
        while let Some(key) = map.next_key_seed(Key)? {
            let duplicate = if many.is_empty() && few.len() < LINEAR_MEMBERS {
                few.contains(&key)
            } else {
                many.extend(few.drain(..));
                many.contains(&key)
            };
            if duplicate {
                *self.0.borrow_mut() = Some(key.into_owned());
                return Err(de::Error::custom("duplicate member"));
            }
            if many.is_empty() {
                few.push(key);
            } else {
                many.insert(key);
            }
            map.next_value_seed(self)?;
        }
        Ok(())
    }
}

/// A member name, borrowed from the input unless it contains escapes.
struct Key;

impl<'de> DeserializeSeed<'de> for Key {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key {
    type Value = Cow<'de, str>;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a member name")
    }

    fn visit_borrowed_str<E>(self, text: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(text))
    }

    fn visit_str<E>(self, text: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(text.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn duplicates_are_found_in_large_objects_too() {
        let members: Vec<String> = (0..100).map(|i| format!("\"m{i}\":{i}")).collect();
        let unique = format!("{{{}}}", members.join(","));
        assert!(from_slice_strict::<serde_json::Value>(unique.as_bytes()).is_ok());
        for repeated in [3, 20, 99] {
            let text = format!("{{{},\"m{repeated}\":0}}", members.join(","));
            assert!(
                from_slice_strict::<serde_json::Value>(text.as_bytes()).is_err(),
                "m{repeated}"
            );
        }
    }

    #[test]
    fn accepts_ordinary_json() {
        let value: Value = from_slice_strict(br#"{"a":[1,{"b":"\u0063"}],"c":null}"#).unwrap();
        assert_eq!(value["a"][1]["b"], "c");
    }

    #[test]
    fn refuses_duplicates_at_any_depth() {
        for text in [
            r#"{"a":1,"a":2}"#,
            r#"{"x":{"a":1,"a":1}}"#,
            r#"[{"a":1},{"b":1,"b":2}]"#,
            r#"{"a":1,"\u0061":2}"#,
        ] {
            let error = from_slice_strict::<Value>(text.as_bytes()).unwrap_err();
            assert!(
                matches!(&error, JsonError::DuplicateMember(name) if name == "a" || name == "b"),
                "{text}: {error}"
            );
        }
    }

    #[test]
    fn sorted_members_serialize_the_same_whatever_the_insertion_order() {
        let mut a = serde_json::json!({"b": 1, "a": {"d": [{"z": 1, "y": 2}], "c": 3}});
        let mut b: Value =
            from_slice_strict(br#"{"a":{"c":3,"d":[{"y":2,"z":1}]},"b":1}"#).unwrap();
        sort_members(&mut a);
        sort_members(&mut b);
        let text = serde_json::to_string(&a).unwrap();
        assert_eq!(text, r#"{"a":{"c":3,"d":[{"y":2,"z":1}]},"b":1}"#);
        assert_eq!(text, serde_json::to_string(&b).unwrap());
    }

    #[test]
    fn refuses_trailing_garbage() {
        assert!(from_slice_strict::<Value>(br#"{"a":1} x"#).is_err());
        assert!(from_slice_strict::<Value>(br#"{"a":1}{"a":1}"#).is_err());
    }
}
