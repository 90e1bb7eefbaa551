//! Credentials: token keys, passwords, randomness, and the request extractors that use them.
pub mod extract;
pub mod key;
pub mod password;
pub mod random;
pub mod redact;
pub mod session;
