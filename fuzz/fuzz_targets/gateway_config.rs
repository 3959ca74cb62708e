//! The gateway's TOML configuration, parsed and checked.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = writ_gateway::Config::parse(text);
    }
});
