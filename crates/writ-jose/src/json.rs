//! JSON that every parser reads the same way: I-JSON (RFC 7493).
//!
//! RFC 7515 §5.2 and RFC 8259 §4 leave duplicate member names to the parser; parsers differ
//! (first wins, last wins, error), which is a classic source of verifier confusion. RFC 8259
//! leaves lone surrogates and the precision of numbers to the parser too. Whatever Writ
//! checks it must read exactly as the next parser will (an upstream tool in another
//! language, a verifier elsewhere), so it refuses, at every depth and before deserializing:
//!
//! - duplicate member names (RFC 7493 §2.3), where names equal but for letter case count
//!   as duplicates: Go's `encoding/json` and .NET's web defaults match member names
//!   without regard to case (Unicode simple case folding: `ſ` is `s`, the Kelvin sign `k`),
//!   so `"method"` and `"Method"` are one member to them;
//! - a byte-order mark, and text that is not UTF-8 (RFC 8259 §8.1, RFC 7493 §2.1);
//! - escapes of lone surrogates, which no parser can turn into a string (RFC 7493 §2.1);
//! - integers beyond ±(2^53 − 1), and other numbers with more than 15 significant digits,
//!   or beyond the range of an IEEE 754 double, or that a double rounds to zero or to a
//!   subnormal (RFC 7493 §2.2): past these, parsers disagree on the value.

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
    /// An object has the same member name twice, or two names equal but for letter case.
    #[error("duplicate JSON member `{0}` (names equal but for letter case are duplicates too)")]
    DuplicateMember(String),
    /// A number parsers may read as different values.
    #[error("the number `{0}` is beyond the precision every JSON parser agrees on (RFC 7493 §2.2)")]
    Imprecise(String),
    /// A `\u` escape of a lone surrogate, which is no character.
    #[error("a string escapes a lone surrogate (RFC 7493 §2.1)")]
    LoneSurrogate,
    /// The text starts with a byte-order mark.
    #[error("JSON text must not start with a byte-order mark (RFC 8259 §8.1)")]
    ByteOrderMark,
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

/// Deserializes `bytes` into `T` after checking that they are I-JSON (see the module docs):
/// no object anywhere repeats a member name, no string escapes a lone surrogate and every
/// number means the same to every parser.
pub fn from_slice_strict<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, JsonError> {
    if bytes.starts_with(b"\xEF\xBB\xBF") {
        return Err(JsonError::ByteOrderMark);
    }
    match check_no_duplicates(bytes) {
        // serde_json refuses lone surrogates and numbers past a double's range too; say
        // which rather than "invalid".
        Err(JsonError::Invalid(error)) => Err(check_tokens(bytes)
            .err()
            .unwrap_or(JsonError::Invalid(error))),
        checked => checked,
    }?;
    check_tokens(bytes)?;
    serde_json::from_slice(bytes).map_err(JsonError::Invalid)
}

/// The largest integer every parser holds exactly: 2^53 − 1 (RFC 7493 §2.2).
const MAX_EXACT_INTEGER: u64 = (1 << 53) - 1;
/// The most significant digits a decimal may have and still survive a round trip through a
/// double unchanged (`f64::DIGITS`).
const MAX_SIGNIFICANT_DIGITS: usize = f64::DIGITS as usize;

/// Checks the numbers and string escapes of text that is already known to be JSON.
fn check_tokens(bytes: &[u8]) -> Result<(), JsonError> {
    let mut index = 0;
    while let Some(&byte) = bytes.get(index) {
        match byte {
            b'"' => index = check_string(bytes, index + 1)?,
            b'-' | b'0'..=b'9' => {
                let end = bytes
                    .get(index..)
                    .and_then(|rest| {
                        rest.iter().position(|b| {
                            !matches!(b, b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
                        })
                    })
                    .map_or(bytes.len(), |length| index + length);
                check_number(bytes.get(index..end).unwrap_or_default())?;
                index = end;
            }
            _ => index += 1,
        }
    }
    Ok(())
}

/// Checks the escapes of the string whose contents start at `start`; returns the index after
/// its closing quote.
fn check_string(bytes: &[u8], start: usize) -> Result<usize, JsonError> {
    let mut index = start;
    // A high surrogate waits for the low one that must follow it at once.
    let mut pending_high = false;
    loop {
        match bytes.get(index) {
            None => return Ok(index),
            Some(b'"') if !pending_high => return Ok(index + 1),
            Some(b'\\') => {
                let unit = (bytes.get(index + 1) == Some(&b'u'))
                    .then(|| bytes.get(index + 2..index + 6))
                    .flatten()
                    .and_then(|hex| std::str::from_utf8(hex).ok())
                    .and_then(|hex| u16::from_str_radix(hex, 16).ok());
                match unit {
                    Some(0xD800..=0xDBFF) if !pending_high => pending_high = true,
                    Some(0xDC00..=0xDFFF) if pending_high => pending_high = false,
                    Some(0xD800..=0xDFFF) => return Err(JsonError::LoneSurrogate),
                    _ if pending_high => return Err(JsonError::LoneSurrogate),
                    _ => {}
                }
                index += if unit.is_some() { 6 } else { 2 };
            }
            Some(_) if pending_high => return Err(JsonError::LoneSurrogate),
            Some(_) => index += 1,
        }
    }
}

/// Checks one number token (RFC 7493 §2.2).
fn check_number(token: &[u8]) -> Result<(), JsonError> {
    let text = String::from_utf8_lossy(token);
    let imprecise = || JsonError::Imprecise(text.chars().take(64).collect());
    let unsigned = token.strip_prefix(b"-").unwrap_or(token);
    if unsigned.iter().all(u8::is_ascii_digit) {
        // An integer: exact up to 2^53 − 1.
        let exact = unsigned.len() <= 16
            && std::str::from_utf8(unsigned)
                .ok()
                .and_then(|digits| digits.parse::<u64>().ok())
                .is_some_and(|value| value <= MAX_EXACT_INTEGER);
        return if exact { Ok(()) } else { Err(imprecise()) };
    }
    let mantissa = unsigned
        .split(|b| matches!(b, b'e' | b'E'))
        .next()
        .unwrap_or_default();
    let digits: Vec<u8> = mantissa
        .iter()
        .copied()
        .filter(u8::is_ascii_digit)
        .collect();
    let significant = digits.iter().position(|&d| d != b'0').map_or(0, |first| {
        let last = digits.iter().rposition(|&d| d != b'0').unwrap_or(first);
        last + 1 - first
    });
    // Text that is no number at all is left to the JSON parser to name.
    let Ok(value) = text.parse::<f64>() else {
        return Ok(());
    };
    let representable = value.is_finite() && (value.is_normal() || significant == 0);
    if significant <= MAX_SIGNIFICANT_DIGITS && representable {
        Ok(())
    } else {
        Err(imprecise())
    }
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
        while let Some(name) = map.next_key_seed(Key)? {
            let key = folded(name);
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

/// A member name as parsers that ignore letter case see it. Names already folded stay
/// borrowed.
fn folded(name: Cow<'_, str>) -> Cow<'_, str> {
    if name
        .bytes()
        .all(|b| b.is_ascii() && !b.is_ascii_uppercase())
    {
        name
    } else {
        Cow::Owned(fold_case(&name))
    }
}

/// `text` folded the way Go's `encoding/json` and .NET match names without regard to case:
/// each character to upper and then to lower case, but only by mappings to one character
/// (simple case folding), so `ſ` is `s`, the Kelvin sign `k` and `ẞ` `ß`, while `ß` stays
/// itself rather than becoming `ss`.
pub fn fold_case(text: &str) -> String {
    fn single(mut mapped: impl Iterator<Item = char>, original: char) -> char {
        match (mapped.next(), mapped.next()) {
            (Some(one), None) => one,
            _ => original,
        }
    }
    text.chars()
        .map(|c| {
            let upper = single(c.to_uppercase(), c);
            single(upper.to_lowercase(), upper)
        })
        .collect()
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
            r#"{"a":1,"A":2}"#,
            r#"{"b":1,"B":2}"#,
            // Go folds `ſ` (long s) into `s` and the Kelvin sign into `k`.
            "{\"a\":{\"s\":1,\"\u{17f}\":2}}",
            "{\"a\":{\"K\":1,\"\u{212a}\":2}}",
            // Simple folding: `ẞ` is `ß` (and `ß` is not `ss`).
            "{\"\u{df}\":1,\"\u{1e9e}\":2}",
        ] {
            let error = from_slice_strict::<Value>(text.as_bytes()).unwrap_err();
            assert!(
                matches!(&error, JsonError::DuplicateMember(_)),
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
    fn refuses_what_parsers_read_differently() {
        for (text, expected) in [
            ("\u{feff}{\"a\":1}", "byte-order mark"),
            (r#"{"a":"\ud800"}"#, "lone surrogate"),
            (r#"{"a":"\udc00x"}"#, "lone surrogate"),
            (r#"{"a":"\ud800\u0041"}"#, "lone surrogate"),
            (r#"{"\ud800":1}"#, "lone surrogate"),
            (r#"{"a":9007199254740992}"#, "`9007199254740992`"),
            (r#"{"a":-9007199254740993}"#, "`-9007199254740993`"),
            (r#"[123456789012345678901234567890]"#, "precision"),
            (r#"[1.0000000000000001]"#, "precision"),
            (r#"[1e400]"#, "precision"),
            (r#"[1e-400]"#, "precision"),
            (r#"[5e-324]"#, "precision"),
        ] {
            let error = from_slice_strict::<Value>(text.as_bytes()).unwrap_err();
            assert!(error.to_string().contains(expected), "{text}: {error}");
        }
        assert!(matches!(
            from_slice_strict::<Value>(b"{\"a\":\"\xff\"}"),
            Err(JsonError::Invalid(_))
        ));
        // Not a number at all: the parser's error, not `Imprecise`.
        assert!(matches!(
            from_slice_strict::<Value>(br#"{"a":1e}"#),
            Err(JsonError::Invalid(_))
        ));
    }

    #[test]
    fn accepts_interoperable_numbers_and_escapes() {
        for text in [
            r#"[9007199254740991, -9007199254740991, 0, -0, 0.0, 1.5e3, 123456789012345e-300]"#,
            r#"[0.1, 1E10, 1e+2, 100000000000000000000.0, 0.000000000000000000000000001]"#,
            r#"{"a":"\ud83d\ude00", "b":"\\ud800", "c":"\"", "d":"-1e999"}"#,
        ] {
            assert!(
                from_slice_strict::<Value>(text.as_bytes()).is_ok(),
                "{text}"
            );
        }
    }

    #[test]
    fn refuses_trailing_garbage() {
        assert!(from_slice_strict::<Value>(br#"{"a":1} x"#).is_err());
        assert!(from_slice_strict::<Value>(br#"{"a":1}{"a":1}"#).is_err());
    }
}
