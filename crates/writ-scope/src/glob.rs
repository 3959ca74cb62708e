//! Globs with two wildcards: `*` matches any run of characters (including none and
//! including `/`), `?` matches exactly one character. No escapes, no classes.
//!
//! Matching is iterative with single-star backtracking, so it runs in O(n·m) time at worst
//! and never recurses.

/// Whether `text` matches `pattern`.
pub(crate) fn matches(pattern: &str, text: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let text: Vec<char> = text.chars().collect();
    let (mut p, mut t) = (0, 0);
    // The position after the last `*` seen and the text position it was tried against.
    let mut backtrack: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some('*') => {
                backtrack = Some((p + 1, t));
                p += 1;
            }
            Some(&c) if c == '?' || Some(&c) == text.get(t) => {
                p += 1;
                t += 1;
            }
            _ => match backtrack {
                // Let the last star swallow one more character and retry.
                Some((star_p, star_t)) => {
                    p = star_p;
                    t = star_t + 1;
                    backtrack = Some((star_p, star_t + 1));
                }
                None => return false,
            },
        }
    }
    pattern
        .get(p..)
        .is_some_and(|rest| rest.iter().all(|&c| c == '*'))
}

/// Whether the pattern has any wildcard.
pub(crate) fn has_wildcard(pattern: &str) -> bool {
    pattern.contains(['*', '?'])
}

/// The literal text before the first wildcard. Every match starts with it.
pub(crate) fn literal_prefix(pattern: &str) -> &str {
    pattern
        .find(['*', '?'])
        .and_then(|index| pattern.get(..index))
        .unwrap_or(pattern)
}

/// If the pattern is a literal followed by a single trailing `*` (it then matches exactly the
/// strings starting with that literal), the literal.
pub(crate) fn as_prefix(pattern: &str) -> Option<&str> {
    let literal = pattern.strip_suffix('*')?;
    (!has_wildcard(literal)).then_some(literal)
}

/// A sound (not complete) test that every string matched by `child` is matched by `parent`.
pub(crate) fn is_subset(child: &str, parent: &str) -> bool {
    if child == parent {
        return true;
    }
    if !has_wildcard(child) {
        // The child matches one string only.
        return matches(parent, child);
    }
    // Every match of the child starts with its literal prefix; a `prefix*` parent admits
    // all of those.
    as_prefix(parent).is_some_and(|prefix| literal_prefix(child).starts_with(prefix))
}

/// Whether a path-like value could step outside a prefix or pattern once a file system
/// or server resolves it: a `.` or `..` segment (between `/` or `\\`, also before `;`
/// parameters, which servlet containers strip first), or a percent-encoded `.`, `/`, `\\`
/// or `%` (decoded twice, `%252e` is `.`). `prefix` and `glob` refuse such values, so
/// `/data/../etc/passwd` is never "under `/data/`".
pub(crate) fn escapes(text: &str) -> bool {
    let dot_segment = text.split(['/', '\\']).any(|segment| {
        let name = segment.split(';').next().unwrap_or_default();
        name == "." || name == ".."
    });
    let lower = text.to_ascii_lowercase();
    dot_segment
        || ["%2e", "%2f", "%5c", "%25"]
            .iter()
            .any(|encoded| lower.contains(encoded))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_segments_and_encoded_separators_escape() {
        for escaping in [
            "/data/../etc/passwd",
            "/data/./x",
            "..",
            "/data/%2e%2e/x",
            "/data%2Fx",
            "a\\..\\b",
            "/data/..;/etc/passwd",
            "/data/%252e%252e/etc/passwd",
        ] {
            assert!(escapes(escaping), "{escaping}");
        }
        for plain in [
            "/data/q3.csv",
            "/data/report..csv",
            "/data/.hidden",
            "relative/file",
        ] {
            assert!(!escapes(plain), "{plain}");
        }
    }

    #[test]
    fn matching() {
        let cases = [
            ("*", "", true),
            ("*", "anything/at/all", true),
            ("a*", "abc", true),
            ("a*", "ba", false),
            ("*.csv", "reports/q1.csv", true),
            ("*.csv", "reports/q1.csv.exe", false),
            ("r?port", "report", true),
            ("r?port", "rport", false),
            ("a*b*c", "aXbYbZc", true),
            ("a*b*c", "aXbYbZ", false),
            ("/v1/*/items", "/v1/x/y/items", true),
            ("", "", true),
            ("", "a", false),
            ("é?", "éé", true),
        ];
        for (pattern, text, expected) in cases {
            assert_eq!(matches(pattern, text), expected, "{pattern} vs {text}");
        }
    }

    #[test]
    fn pathological_patterns_finish() {
        let pattern = "*a".repeat(50);
        let text = "a".repeat(2000) + "b";
        assert!(!matches(&pattern, &text));
    }

    #[test]
    fn subset_rules() {
        assert!(is_subset("/data/*", "/data/*"));
        assert!(is_subset("/data/x/*", "/data/*"));
        assert!(is_subset("/data/x.csv", "/data/*.csv"));
        assert!(is_subset("/data/?/*", "/data/*"));
        assert!(!is_subset("/data/*", "/data/x/*"));
        assert!(!is_subset("/*", "/data/*"));
        assert!(!is_subset("/data/*.csv", "/data/*.txt"));
        // Sound but incomplete: true in fact, but not proved by these rules.
        assert!(!is_subset("/data/*.csv", "/data/*.*"));
    }
}
