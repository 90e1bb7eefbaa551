//! `JsonOrForm`'s decoding (`routes::body::decode`) into every API request body, under the input's
//! own `Content-Type` and under JSON and form alike: never panics, and every refusal is a 400 or
//! a 415, never a server error.
//!
//! Input: the `Content-Type` value up to the first newline, then the body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use multitoken::{
    error::ApiError,
    routes::{
        api::{
            admin::NewUserRequest,
            introspect::IntrospectionRequest,
            session::{LoginRequest, LogoutAllRequest, NonExpiringTokenRequest},
            tokens::NewTokenRequest,
        },
        body::decode,
    },
};
use serde::de::DeserializeOwned;

fn check<T: DeserializeOwned>(content_type: Option<&str>, body: &[u8]) {
    match decode::<T>(content_type, body) {
        Ok(_) | Err(ApiError::BadRequest(_) | ApiError::WrongType { .. }) => {}
        Err(ApiError::UnsupportedMediaType) => assert!(
            !body.iter().all(u8::is_ascii_whitespace),
            "an empty body is an empty form whatever its type"
        ),
        Err(other) => panic!("decoding answered {other:?}, not a 400 or 415"),
    }
}

fn check_all(content_type: Option<&str>, body: &[u8]) {
    check::<LoginRequest>(content_type, body);
    check::<NonExpiringTokenRequest>(content_type, body);
    check::<LogoutAllRequest>(content_type, body);
    check::<NewTokenRequest>(content_type, body);
    check::<IntrospectionRequest>(content_type, body);
    check::<NewUserRequest>(content_type, body);
}

fuzz_target!(|data: &[u8]| {
    let (content_type, body) = match data.iter().position(|&b| b == b'\n') {
        // Not UTF-8 reads as absent. (Actix's `HeaderValue::to_str` admits visible ASCII only,
        // so this reaches more than the server ever passes on.)
        Some(at) => (std::str::from_utf8(&data[..at]).ok(), &data[at + 1..]),
        None => (None, data),
    };
    check_all(content_type, body);
    check_all(Some("application/json"), body);
    check_all(Some("application/x-www-form-urlencoded"), body);
});
