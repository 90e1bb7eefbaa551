//! Credentials, pure: token keys (format, checksum, digest), passwords (argon2), randomness.
//! Nothing here knows of HTTP or the database.
pub mod key;
pub mod password;
pub mod random;
pub mod redact;
