//! go-auth request bodies in json and form mode (and wrong content types): an error or
//! parameters, never a panic; what is read encodes and reads back the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vesper_core::goauth::{ParamsMode, encode_params, parse_params};

const TYPES: [Option<&str>; 5] = [
    Some("application/json"),
    Some("application/x-www-form-urlencoded"),
    Some("application/json; charset=utf-8"),
    Some("text/plain"),
    None,
];

fuzz_target!(|data: &[u8]| {
    let Some((&first, body)) = data.split_first() else {
        return;
    };
    let content_type = TYPES[usize::from(first) % TYPES.len()];
    if let Ok(params) = parse_params(content_type, body) {
        for mode in [ParamsMode::Json, ParamsMode::Form] {
            let (ct, encoded) = encode_params(mode, &params);
            if encoded.len() <= vesper_core::goauth::MAX_BODY {
                assert_eq!(parse_params(Some(ct), &encoded).as_ref(), Ok(&params), "{mode:?}");
            }
        }
    }
});
