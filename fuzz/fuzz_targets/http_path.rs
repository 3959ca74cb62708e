//! HTTP request paths and query strings as writ-scope reads them: the one normal form the
//! issuer, the gateway and the sidecar share.
//!
//! Input: a path, then optionally a NUL and a query string.
#![no_main]

use libfuzzer_sys::fuzz_target;
use writ_scope::{Parameters, check_path, parse_query};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (path, query) = text.split_once('\0').unwrap_or((text, ""));
    for parameters in [
        Parameters::for_pattern("/*"),
        Parameters::for_pattern("/a;b/*"),
    ] {
        if check_path(path, parameters).is_ok() {
            // A path in normal form has no dot segments, no empty segments and no encoded
            // delimiter a server could read another way.
            assert!(path.starts_with('/'));
            for segment in path.split('/').skip(1) {
                let name = segment.split(';').next().unwrap_or_default();
                assert!(name != "." && name != "..", "{path}");
            }
            let lower = path.to_ascii_lowercase();
            for encoded in ["%2e", "%2f", "%5c", "%25"] {
                assert!(!lower.contains(encoded), "{path}");
            }
        }
    }
    let _ = parse_query(query);
});
