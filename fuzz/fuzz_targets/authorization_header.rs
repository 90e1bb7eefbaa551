//! `key_from_authorization` on arbitrary header values: never panics, and any key it returns is a
//! non-empty, trimmed piece of the value after a `Token` or `Bearer` scheme.
#![no_main]

use libfuzzer_sys::fuzz_target;
use multitoken::{auth::key::TokenKey, routes::extract::key_from_authorization};

fuzz_target!(|data: &[u8]| {
    // Header values reach the parser only through `HeaderValue::to_str`, so as valid UTF-8.
    let Ok(value) = std::str::from_utf8(data) else {
        return;
    };
    let Some(key) = key_from_authorization(value) else {
        return;
    };
    assert!(!key.is_empty(), "an empty key must be refused");
    assert_eq!(key, key.trim(), "the key must be trimmed");
    assert!(
        value.contains(key),
        "the key must come from the header value"
    );
    let scheme = value.trim_start().split(' ').next().unwrap_or_default();
    assert!(
        scheme.eq_ignore_ascii_case("token") || scheme.eq_ignore_ascii_case("bearer"),
        "only the Token and Bearer schemes carry a key"
    );
    // What the API does next with it.
    let _ = TokenKey::parse(key);
});
