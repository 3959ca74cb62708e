//! The token endpoint's body (`POST /token`): the form, no parameter twice, and its
//! `authorization_details`, read by the issuer's own code.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(error) = writ_issuer::inputs::token_request(data) {
        // Every refusal names its reason.
        assert!(!error.reason().is_empty());
    }
});
