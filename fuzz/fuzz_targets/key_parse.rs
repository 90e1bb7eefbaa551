//! `TokenKey::parse` on arbitrary text: never panics, and whatever it accepts is a well-formed key
//! whose digest and display prefix behave. Also `KeyDigest::matches_hex` on arbitrary stored text.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use multitoken::auth::key::{KEY_LEN, KEY_PREFIX, KeyDigest, TokenKey};

/// A stored digest to hold arbitrary text against.
static STORED: LazyLock<KeyDigest> = LazyLock::new(|| TokenKey::generate().digest());

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // The presented text as a stored digest: it matches only if it is that digest's hex.
    assert_eq!(
        STORED.matches_hex(text),
        text.eq_ignore_ascii_case(&STORED.to_hex())
    );

    let Ok(key) = TokenKey::parse(text) else {
        return;
    };
    assert_eq!(
        key.reveal(),
        text,
        "parse must keep the key exactly as presented"
    );
    assert_eq!(key.reveal().len(), KEY_LEN);
    assert!(key.reveal().starts_with(KEY_PREFIX));

    let again = TokenKey::parse(key.reveal()).expect("an accepted key must parse again");
    assert_eq!(again.reveal(), key.reveal());
    assert_eq!(again.digest(), key.digest(), "the digest must be stable");
    assert!(key.reveal().starts_with(&key.display_prefix()));

    let digest = key.digest();
    assert!(digest.matches_hex(&digest.to_hex()));
});
