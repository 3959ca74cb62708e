//! SCIM PatchOp bodies (`PATCH /scim/v2/Users/{id}`, RFC 7644 §3.5.2), read by the
//! issuer's own code.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = writ_issuer::inputs::scim_patch(data);
});
