//! One reading of HTTP request paths and query strings, for the issuer, the gateway and the
//! sidecar alike.
//!
//! Servers resolve paths in different ways: RFC 3986 removes dot segments and decodes
//! percent-encoded unreserved characters; servlet containers strip `;` parameters from each
//! segment before they resolve dot segments (`/a/..;/admin` is `/admin`); some servers decode
//! twice (`%252e` is `.`), merge slashes or take `\` for `/`. A check that reads a path one
//! way in front of a server that reads it another way checks the wrong path. So Writ never
//! rewrites a path: it admits only paths that every such reading leaves unchanged, and
//! refuses the rest with a reason.
//!
//! A path is in normal form when:
//! - it starts with `/` and has no empty segment except a trailing one (`/a//b` is refused;
//!   `/a/` is fine), also before a `;` (`/a/;x/b`);
//! - no segment is `.`, `..` or any other run of dots and spaces (Windows trims trailing
//!   dots and spaces: `..%20` and `...` are `..` there), also before a `;` or `%3B` (`..;`);
//! - every character is an RFC 3986 `pchar` or `/` (no `\`, space, `"`, `<`, `>`, `{`, …);
//! - every `%` starts an escape of two upper-case hex digits (RFC 3986 §6.2.2.1), and no
//!   escape encodes an unreserved character (§6.2.2.2: `%2E`, `%41`), `%`, `/`, `\`, `;`
//!   or a control character;
//! - its escapes decode to UTF-8 in shortest form (no overlong `%C0%AE`), and to no character
//!   that compatibility normalization or Windows' best-fit mapping turns into `.`, `/`,
//!   `\`, `;` or `%` (fullwidth `%EF%BC%8E` is `.` after NFKC);
//! - it has no `;` parameters, unless the grant's own pattern has a `;`.
//!
//! Query strings (see [`parse_query`]) are read as `name=value` pairs separated by `&`, and
//! refused when parsers would disagree on them: a repeated name (also one equal but for
//! letter case), `+` (a space to form decoders, a plus to others), `;` (a separator to
//! some), an empty pair, an escape that is malformed or not UTF-8, a name with `[`, `]` or
//! `.` (arrays and objects to PHP, Rails and `qs`; `a.b` is `a_b` to PHP), space or a control
//! character, more than [`MAX_QUERY_PAIRS`] pairs (PHP and `qs` drop pairs past a limit), and
//! `_method`, which frameworks take as the request's method.

use std::fmt;

use serde_json::{Map, Value};

/// The longest request path or query string read, in bytes.
pub const MAX_PATH_LEN: usize = 4096;
/// The most `name=value` pairs a query may have.
pub const MAX_QUERY_PAIRS: usize = 100;

/// Characters that compatibility normalization (NFKC) or Windows' best-fit code pages turn
/// into `.`, `/`, `\`, `;` or `%`: fullwidth, small and other look-alike forms. A server
/// that normalizes a decoded path would read them as delimiters.
const CONFUSABLE: [char; 16] = [
    '\u{FF0E}', // fullwidth full stop
    '\u{FF0F}', // fullwidth solidus
    '\u{FF3C}', // fullwidth reverse solidus
    '\u{FF1B}', // fullwidth semicolon
    '\u{FF05}', // fullwidth percent sign
    '\u{FE52}', // small full stop
    '\u{FE68}', // small reverse solidus
    '\u{FE54}', // small semicolon
    '\u{FE6A}', // small percent sign
    '\u{2024}', // one dot leader
    '\u{2025}', // two dot leader
    '\u{2026}', // horizontal ellipsis
    '\u{2215}', // division slash
    '\u{2044}', // fraction slash
    '\u{29F8}', // big solidus
    '\u{037E}', // Greek question mark, which NFC makes `;`
];

/// Why a request path or path pattern is not in normal form.
///
/// The request's author is at fault. Each variant has a stable code, [`PathError::code`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathError {
    /// The path does not start with `/`, is empty, or is longer than [`MAX_PATH_LEN`].
    NotAbsolute,
    /// A `.` or `..` segment, also before `;` parameters.
    DotSegment,
    /// An empty segment before the last (`//`).
    EmptySegment,
    /// A character outside RFC 3986 `pchar` and `/`.
    Character(char),
    /// A `%` that does not start two hex digits, or lower-case hex digits.
    MalformedEscape,
    /// An escape of an unreserved character, which normalization would decode.
    EncodedUnreserved(char),
    /// An escape of `%`, `/`, `\`, `;` or a control character, which some server decodes
    /// into another path.
    EncodedDelimiter(u8),
    /// `;` parameters where the grant allows none.
    Parameters,
    /// Escapes that do not decode to UTF-8 in shortest form.
    InvalidUtf8,
    /// A character that normalization turns into a delimiter.
    Confusable(char),
}

impl PathError {
    /// A stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            PathError::NotAbsolute => "path_not_absolute",
            PathError::DotSegment => "path_dot_segment",
            PathError::EmptySegment => "path_empty_segment",
            PathError::Character(_) => "path_invalid_character",
            PathError::MalformedEscape => "path_malformed_escape",
            PathError::EncodedUnreserved(_) => "path_encoded_unreserved",
            PathError::EncodedDelimiter(_) => "path_encoded_delimiter",
            PathError::Parameters => "path_parameters",
            PathError::InvalidUtf8 => "path_malformed_escape",
            PathError::Confusable(_) => "path_confusable_character",
        }
    }
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathError::NotAbsolute => write!(
                f,
                "a path starts with `/` and has at most {MAX_PATH_LEN} bytes"
            ),
            PathError::DotSegment => f.write_str(
                "a path must not have `.` or `..` segments (servers resolve them differently)",
            ),
            PathError::EmptySegment => {
                f.write_str("a path must not have empty segments (`//`), which servers merge")
            }
            PathError::Character(c) => write!(
                f,
                "a path must not hold `{}` unencoded (RFC 3986 §3.3)",
                c.escape_default()
            ),
            PathError::MalformedEscape => f.write_str(
                "each `%` in a path starts two upper-case hex digits (RFC 3986 §6.2.2.1)",
            ),
            PathError::EncodedUnreserved(c) => write!(
                f,
                "a path must not percent-encode `{c}`, which normalization decodes (RFC 3986 §6.2.2.2)"
            ),
            PathError::EncodedDelimiter(byte) => write!(
                f,
                "a path must not hold `%{byte:02X}`: servers that decode it read another path"
            ),
            PathError::Parameters => f.write_str(
                "a path must not have `;` parameters unless the grant's path pattern has them",
            ),
            PathError::InvalidUtf8 => {
                f.write_str("a path's escapes must decode to UTF-8 in shortest form")
            }
            PathError::Confusable(c) => write!(
                f,
                "a path must not hold `{}`, which normalization turns into a delimiter",
                c.escape_unicode()
            ),
        }
    }
}

impl std::error::Error for PathError {}

/// Whether `;` parameters may appear in the path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parameters {
    /// A `;` is refused.
    Refused,
    /// A `;` is taken as an ordinary character (the grant names parameters itself).
    Allowed,
}

impl Parameters {
    /// Parameters are allowed exactly when the grant's path pattern has a `;`.
    pub fn for_pattern(pattern: &str) -> Parameters {
        if pattern.contains(';') {
            Parameters::Allowed
        } else {
            Parameters::Refused
        }
    }
}

/// Checks that a request path is in normal form (see the module docs).
pub fn check_path(path: &str, parameters: Parameters) -> Result<(), PathError> {
    check(path, parameters, false)
}

/// Checks a path pattern as [`check_path`] checks a path, taking `?` as a wildcard and
/// allowing `;` (a pattern with a `;` is what allows parameters).
pub(crate) fn check_pattern(pattern: &str) -> Result<(), PathError> {
    check(pattern, Parameters::Allowed, true)
}

fn check(path: &str, parameters: Parameters, pattern: bool) -> Result<(), PathError> {
    let Some(rest) = path.strip_prefix('/') else {
        return Err(PathError::NotAbsolute);
    };
    if path.len() > MAX_PATH_LEN {
        return Err(PathError::NotAbsolute);
    }
    let mut segments = rest.split('/').peekable();
    while let Some(segment) = segments.next() {
        let name = segment_name(segment);
        if name.is_empty() && (segments.peek().is_some() || name.len() != segment.len()) {
            return Err(PathError::EmptySegment);
        }
        if !name.is_empty()
            && name
                .split("%20")
                .all(|part| part.bytes().all(|b| b == b'.'))
        {
            return Err(PathError::DotSegment);
        }
    }
    let bytes = path.as_bytes();
    let mut index = 0;
    while let Some(&byte) = bytes.get(index) {
        match byte {
            b'%' => {
                check_escape(bytes.get(index + 1..index + 3), parameters)?;
                index += 3;
                continue;
            }
            b';' if parameters == Parameters::Refused => return Err(PathError::Parameters),
            b'?' if pattern => {}
            _ if is_pchar(byte) || byte == b'/' => {}
            _ => return Err(PathError::Character(char::from(byte))),
        }
        index += 1;
    }
    let decoded = percent_decode(path).ok_or(PathError::MalformedEscape)?;
    let decoded = String::from_utf8(decoded).map_err(|_| PathError::InvalidUtf8)?;
    match decoded.chars().find(|c| CONFUSABLE.contains(c)) {
        Some(c) => Err(PathError::Confusable(c)),
        None => Ok(()),
    }
}

/// A segment without its `;` parameters (`;` or, decoded by some servers first, `%3B`).
fn segment_name(segment: &str) -> &str {
    let end = [segment.find(';'), segment.find("%3B")]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(segment.len());
    segment.get(..end).unwrap_or(segment)
}

/// A path or pattern without the `;` parameters of its segments: what a servlet container
/// routes on.
pub(crate) fn without_parameters(path: &str) -> String {
    path.split('/')
        .map(segment_name)
        .collect::<Vec<_>>()
        .join("/")
}

/// The bytes `text` stands for, each `%XX` escape decoded once (either case of hex);
/// `None` when a `%` does not start two hex digits.
pub fn percent_decode(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while let Some(&byte) = bytes.get(index) {
        if byte == b'%' {
            let value = bytes
                .get(index + 1..index + 3)
                .and_then(|digits| std::str::from_utf8(digits).ok())
                .and_then(|digits| u8::from_str_radix(digits, 16).ok())?;
            decoded.push(value);
            index += 3;
        } else {
            decoded.push(byte);
            index += 1;
        }
    }
    Some(decoded)
}

/// RFC 3986 §3.3 `pchar`, without `pct-encoded`: unreserved, sub-delims, `:` and `@`.
fn is_pchar(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@".contains(&byte)
}

fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"-._~".contains(&byte)
}

fn upper_hex(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

fn check_escape(digits: Option<&[u8]>, parameters: Parameters) -> Result<(), PathError> {
    let Some(&[high, low]) = digits else {
        return Err(PathError::MalformedEscape);
    };
    let (Some(high), Some(low)) = (upper_hex(high), upper_hex(low)) else {
        return Err(PathError::MalformedEscape);
    };
    let byte = high << 4 | low;
    if is_unreserved(byte) {
        return Err(PathError::EncodedUnreserved(char::from(byte)));
    }
    let delimiter = matches!(byte, b'%' | b'/' | b'\\') || byte.is_ascii_control();
    if delimiter || (byte == b';' && parameters == Parameters::Refused) {
        return Err(PathError::EncodedDelimiter(byte));
    }
    Ok(())
}

/// Why a query string was refused. The request's author is at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueryError {
    /// The query is longer than [`MAX_PATH_LEN`].
    TooLong,
    /// A name appears twice: parsers keep the first, the last, or both.
    RepeatedName(String),
    /// A `+`, which form decoders read as a space and others as a plus.
    Plus,
    /// A `;`, which some parsers take as a separator.
    Semicolon,
    /// An empty pair or an empty name (`&&`, `=x`).
    EmptyPair,
    /// A `%` not followed by two hex digits, or an escape that is not UTF-8.
    MalformedEscape,
    /// A character outside RFC 3986 §3.4 `query`.
    Character(char),
    /// A name that frameworks read as structure or rewrite: `[`, `]`, `.`, space or a
    /// control character.
    Name(String),
    /// More than [`MAX_QUERY_PAIRS`] pairs.
    TooManyPairs,
    /// `_method`, which frameworks take as the request's method.
    MethodOverride,
}

impl QueryError {
    /// A stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            QueryError::TooLong => "query_too_long",
            QueryError::RepeatedName(_) => "query_repeated_name",
            QueryError::Plus | QueryError::Semicolon => "query_ambiguous_separator",
            QueryError::EmptyPair => "query_empty_pair",
            QueryError::MalformedEscape => "query_malformed_escape",
            QueryError::Character(_) => "query_invalid_character",
            QueryError::Name(_) => "query_ambiguous_name",
            QueryError::TooManyPairs => "query_too_long",
            QueryError::MethodOverride => "method_override",
        }
    }
}

impl fmt::Display for QueryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QueryError::TooLong => write!(f, "the query is longer than {MAX_PATH_LEN} bytes"),
            QueryError::RepeatedName(name) => write!(
                f,
                "the query names `{}` more than once",
                name.escape_default()
            ),
            QueryError::Plus => {
                f.write_str("the query holds `+`: encode a space as `%20` and a plus as `%2B`")
            }
            QueryError::Semicolon => {
                f.write_str("the query holds `;`: separate pairs with `&`, encode `;` as `%3B`")
            }
            QueryError::EmptyPair => f.write_str("the query has an empty pair or name"),
            QueryError::MalformedEscape => f.write_str(
                "each `%` in the query starts two hex digits, and escapes decode to UTF-8",
            ),
            QueryError::Character(c) => write!(
                f,
                "the query must not hold `{}` unencoded (RFC 3986 §3.4)",
                c.escape_default()
            ),
            QueryError::Name(name) => write!(
                f,
                "the query name `{}` holds `[`, `]`, `.`, a space or a control character, which frameworks read as structure",
                name.escape_default()
            ),
            QueryError::TooManyPairs => {
                write!(f, "the query has more than {MAX_QUERY_PAIRS} pairs")
            }
            QueryError::MethodOverride => f.write_str(
                "the query names `_method`, which frameworks take as the request's method",
            ),
        }
    }
}

impl std::error::Error for QueryError {}

/// Reads a query string (without the `?`) as a JSON object of decoded names and string
/// values, refusing what parsers read differently (see the module docs). A name without `=`
/// has the value `""`.
pub fn parse_query(query: &str) -> Result<Map<String, Value>, QueryError> {
    if query.len() > MAX_PATH_LEN {
        return Err(QueryError::TooLong);
    }
    if let Some(byte) = query
        .bytes()
        .find(|&byte| !(is_pchar(byte) || b"/?%".contains(&byte)))
    {
        return Err(QueryError::Character(char::from(byte)));
    }
    if query.contains('+') {
        return Err(QueryError::Plus);
    }
    if query.contains(';') {
        return Err(QueryError::Semicolon);
    }
    let mut pairs = Map::new();
    if query.is_empty() {
        return Ok(pairs);
    }
    if query.split('&').count() > MAX_QUERY_PAIRS {
        return Err(QueryError::TooManyPairs);
    }
    let mut folded = std::collections::HashSet::new();
    for pair in query.split('&') {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if name.is_empty() {
            return Err(QueryError::EmptyPair);
        }
        let name = decode(name)?;
        let value = decode(value)?;
        if name
            .chars()
            .any(|c| matches!(c, '[' | ']' | '.' | ' ') || c.is_control())
        {
            return Err(QueryError::Name(name));
        }
        if name.eq_ignore_ascii_case("_method") {
            return Err(QueryError::MethodOverride);
        }
        // ASP.NET and others match names without regard to case.
        if !folded.insert(writ_jose::fold_case(&name)) {
            return Err(QueryError::RepeatedName(name));
        }
        pairs.insert(name, Value::String(value));
    }
    Ok(pairs)
}

/// Percent-decodes one name or value into UTF-8.
fn decode(text: &str) -> Result<String, QueryError> {
    percent_decode(text)
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or(QueryError::MalformedEscape)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn normal_paths_pass() {
        for path in [
            "/",
            "/customers/",
            "/customers/42",
            "/v1/reports/q3.csv",
            "/a/.hidden/report..csv",
            "/files/caf%C3%A9",
            "/search/a%20b",
            "/a/~user/x-y_z",
            "/a:b@c!$&'()*+,=",
            "/literal%3F",
        ] {
            assert_eq!(check_path(path, Parameters::Refused), Ok(()), "{path}");
        }
    }

    #[test]
    fn every_reading_that_could_differ_is_refused() {
        let cases: [(&str, &str); 35] = [
            ("", "path_not_absolute"),
            ("customers", "path_not_absolute"),
            ("/customers/../admin", "path_dot_segment"),
            ("/customers/./x", "path_dot_segment"),
            ("/customers/..", "path_dot_segment"),
            ("/customers/..;/admin", "path_dot_segment"),
            ("/customers/.;x=1/admin", "path_dot_segment"),
            ("/customers//admin", "path_empty_segment"),
            ("//admin", "path_empty_segment"),
            ("/customers\\..\\admin", "path_invalid_character"),
            ("/a b", "path_invalid_character"),
            ("/a\"b", "path_invalid_character"),
            ("/a{b}", "path_invalid_character"),
            ("/a%2", "path_malformed_escape"),
            ("/a%zz", "path_malformed_escape"),
            ("/a%c3%a9", "path_malformed_escape"),
            ("/customers/%2E%2E/admin", "path_encoded_unreserved"),
            ("/customers/%41", "path_encoded_unreserved"),
            ("/customers/%252e%252e/admin", "path_encoded_delimiter"),
            ("/customers/%2F..%2Fadmin", "path_encoded_delimiter"),
            ("/customers/..%5Cadmin", "path_encoded_delimiter"),
            ("/customers/x%00.json", "path_encoded_delimiter"),
            ("/customers/x;jsessionid=1", "path_parameters"),
            ("/customers/x%3Bjsessionid=1", "path_encoded_delimiter"),
            ("/customers/...", "path_dot_segment"),
            ("/customers/..%20/admin", "path_dot_segment"),
            ("/customers/.%20./admin", "path_dot_segment"),
            ("/customers/%C0%AE%C0%AE/admin", "path_malformed_escape"),
            ("/customers/%FF", "path_malformed_escape"),
            ("/customers/%C3", "path_malformed_escape"),
            (
                "/customers/%EF%BC%8E%EF%BC%8E/admin",
                "path_confusable_character",
            ),
            ("/customers/x%EF%BC%8Fadmin", "path_confusable_character"),
            ("/customers/%E2%80%A5/admin", "path_confusable_character"),
            ("/customers/%E2%88%95admin", "path_confusable_character"),
            ("/customers/%CD%BE", "path_confusable_character"),
        ];
        for (path, code) in cases {
            let error = check_path(path, Parameters::Refused).unwrap_err();
            assert_eq!(error.code(), code, "{path}: {error}");
        }
    }

    #[test]
    fn parameters_only_where_the_pattern_has_them() {
        assert_eq!(Parameters::for_pattern("/items/*"), Parameters::Refused);
        assert_eq!(Parameters::for_pattern("/items/*;*"), Parameters::Allowed);
        assert_eq!(check_path("/items/a;v=1", Parameters::Allowed), Ok(()));
        assert_eq!(check_path("/items/a%3Bv=1", Parameters::Allowed), Ok(()));
        // Parameters never hide a dot segment or an empty one.
        for (path, error) in [
            ("/items/..;v=1/admin", PathError::DotSegment),
            ("/items/..%3B/admin;x", PathError::DotSegment),
            ("/items/.%3B/admin", PathError::DotSegment),
            ("/items/;x/admin", PathError::EmptySegment),
            ("/items/%3Bx/admin", PathError::EmptySegment),
        ] {
            assert_eq!(check_path(path, Parameters::Allowed), Err(error), "{path}");
        }
        assert_eq!(
            without_parameters("/api;v=2/users/secret;.json"),
            "/api/users/secret"
        );
    }

    #[test]
    fn patterns_take_question_marks_as_wildcards() {
        assert_eq!(check_pattern("/v1/r?ports/*"), Ok(()));
        assert_eq!(check_pattern("/v1/*/../admin"), Err(PathError::DotSegment));
        assert_eq!(
            check_path("/v1/r?ports", Parameters::Refused),
            Err(PathError::Character('?'))
        );
    }

    #[test]
    fn queries_are_read_one_way() {
        assert_eq!(
            parse_query("page=2&q=caf%C3%A9%20bar&flag&slash=a/b?c").unwrap(),
            *json!({"page": "2", "q": "café bar", "flag": "", "slash": "a/b?c"})
                .as_object()
                .unwrap()
        );
        assert!(parse_query("").unwrap().is_empty());
        let cases = [
            ("a=1&a=2", "query_repeated_name"),
            ("a=1&%61=2", "query_repeated_name"),
            ("q=a+b", "query_ambiguous_separator"),
            ("a=1;b=2", "query_ambiguous_separator"),
            ("a=1&&b=2", "query_empty_pair"),
            ("=x", "query_empty_pair"),
            ("a=%zz", "query_malformed_escape"),
            ("a=%ff", "query_malformed_escape"),
            ("a=b c", "query_invalid_character"),
            ("a=b#c", "query_invalid_character"),
            ("owner=alice&Owner=bob", "query_repeated_name"),
            ("owner=alice&owner%5B%5D=bob", "query_ambiguous_name"),
            ("a.b=1", "query_ambiguous_name"),
            ("x%5B0%5D=1", "query_ambiguous_name"),
            ("a%20b=1", "query_ambiguous_name"),
            ("a%00=1", "query_ambiguous_name"),
            ("_method=DELETE", "method_override"),
            ("_METHOD=DELETE", "method_override"),
            ("s=1&%C5%BF=2", "query_repeated_name"),
        ];
        for (query, code) in cases {
            let error = parse_query(query).unwrap_err();
            assert_eq!(error.code(), code, "{query}: {error}");
        }
        assert_eq!(percent_decode("a%2fb%2F"), Some(b"a/b/".to_vec()));
        assert_eq!(percent_decode("a%2"), None);
        let padded = vec!["a=1"; MAX_QUERY_PAIRS + 1].join("&");
        assert_eq!(parse_query(&padded), Err(QueryError::TooManyPairs));
    }
}
