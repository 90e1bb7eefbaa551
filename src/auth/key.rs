//! The token key format. Everything else sees `TokenKey` (plaintext, shown once) and `KeyDigest`
//! (what is stored).
//!
//! A key is `mt_` + 30 random base62 characters + a 6-character base62 CRC-32 of everything before
//! it, like GitHub's token format: base62 keeps a key selectable with one double-click, the prefix
//! makes leaked keys easy to scan for, and the checksum refuses mistyped or random keys before any
//! database query.

use std::fmt;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::random::random_alphanumeric;

/// Every key starts with this. Changing it invalidates every key ever issued.
pub const KEY_PREFIX: &str = "mt_";
/// 30 × log2(62) ≈ 178 bits; the 8 shown in the display prefix leave ≈ 131 secret bits.
const SECRET_LEN: usize = 30;
const CHECKSUM_LEN: usize = 6;
pub const KEY_LEN: usize = KEY_PREFIX.len() + SECRET_LEN + CHECKSUM_LEN;
/// How much of the key is kept in clear so people can tell their tokens apart.
const DISPLAY_PREFIX_LEN: usize = KEY_PREFIX.len() + 8;

/// A plaintext key. It exists only between generation and the response that reveals it, and
/// between the request header and the digest. Its Debug never prints it, so keys never reach logs.
/// Held on the stack: every request parses one, and every key has the same length.
pub struct TokenKey([u8; KEY_LEN]);

/// SHA-256 of a key: the only form that touches the database. A digest of a high-entropy random
/// secret needs no salt or stretching (argon2 is for passwords, which are guessable).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyDigest([u8; 32]);

#[derive(Debug, PartialEq, Eq)]
pub enum KeyFormatError {
    WrongPrefix,
    WrongLength,
    NotBase62,
    BadChecksum,
}

impl TokenKey {
    pub fn generate() -> TokenKey {
        TokenKey::with_secret(&random_alphanumeric(SECRET_LEN))
    }

    /// Prefix, secret and checksum. Apart from `generate`, only the property tests choose a secret.
    fn with_secret(secret: &str) -> TokenKey {
        let mut key = String::with_capacity(KEY_LEN);
        key.push_str(KEY_PREFIX);
        key.push_str(secret);
        let checksum = checksum_of(&key);
        key.push_str(std::str::from_utf8(&checksum).expect("base 62 is ASCII"));
        TokenKey(
            key.as_bytes()
                .try_into()
                .expect("prefix, secret and checksum make KEY_LEN bytes"),
        )
    }

    /// Checks the shape and checksum of a presented key. No I/O: a malformed key costs nothing.
    pub fn parse(text: &str) -> Result<TokenKey, KeyFormatError> {
        if !text.starts_with(KEY_PREFIX) {
            return Err(KeyFormatError::WrongPrefix);
        }
        if text.len() != KEY_LEN {
            return Err(KeyFormatError::WrongLength);
        }
        // Checked before splitting: every byte ASCII means every index is a char boundary.
        if !text[KEY_PREFIX.len()..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric())
        {
            return Err(KeyFormatError::NotBase62);
        }
        let (body, checksum) = text.split_at(KEY_LEN - CHECKSUM_LEN);
        if !bool::from(checksum_of(body)[..].ct_eq(checksum.as_bytes())) {
            return Err(KeyFormatError::BadChecksum);
        }
        Ok(TokenKey(
            text.as_bytes()
                .try_into()
                .expect("the length was checked above"),
        ))
    }

    pub fn digest(&self) -> KeyDigest {
        KeyDigest(Sha256::digest(self.0).into())
    }

    /// The first characters, safe to store and show ("mt_AbCd1234").
    pub fn display_prefix(&self) -> String {
        self.reveal()[..DISPLAY_PREFIX_LEN].to_owned()
    }

    /// The full key, for the one response that hands it to its owner.
    pub fn reveal(&self) -> &str {
        std::str::from_utf8(&self.0).expect("a key is ASCII: built from base 62, or checked so")
    }
}

impl fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenKey(***)")
    }
}

impl KeyDigest {
    /// The raw digest, as the verification cache keys it.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The hex form written into `buffer`, for a query parameter that needs no allocation.
    pub fn write_hex<'a>(&self, buffer: &'a mut [u8; 64]) -> &'a str {
        // 64 bytes hold exactly 32 bytes' hex, so neither step can fail.
        hex::encode_to_slice(self.0, buffer).expect("64 bytes hold a 32-byte digest");
        std::str::from_utf8(buffer).expect("hex is ASCII")
    }

    /// Constant-time equality with a stored hex digest, so a comparison never tells how much matched.
    pub fn matches_hex(&self, stored: &str) -> bool {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(stored, &mut bytes).is_ok() && bool::from(self.0.ct_eq(&bytes))
    }
}

impl fmt::Debug for KeyDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyDigest(***)")
    }
}

/// Base62 CRC-32, left-padded to a fixed width so every key has the same length.
/// The base-62 CRC-32 of `body`, zero-padded to `CHECKSUM_LEN` characters. Written on the stack:
/// every presented key is checked with it.
fn checksum_of(body: &str) -> [u8; CHECKSUM_LEN] {
    let mut digits = [0u8; CHECKSUM_LEN];
    let len = base62::encode_bytes(crc32fast::hash(body.as_bytes()), &mut digits)
        .expect("a u32 has at most six base-62 digits");
    let mut padded = [b'0'; CHECKSUM_LEN];
    padded[CHECKSUM_LEN - len..].copy_from_slice(&digits[..len]);
    padded
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_parses_back_and_keeps_its_digest() {
        let key = TokenKey::generate();
        assert_eq!(key.reveal().len(), KEY_LEN);
        let parsed = TokenKey::parse(key.reveal()).expect("a fresh key must parse");
        assert_eq!(parsed.digest(), key.digest());
        assert!(key.digest().matches_hex(&key.digest().to_hex()));
        assert_eq!(key.digest().write_hex(&mut [0; 64]), key.digest().to_hex());
    }

    #[test]
    fn the_checksum_is_the_crc_in_base_62_padded_with_zeros() {
        // "" has CRC 0: all padding. The others need five or six digits.
        for body in ["", "a", "mt_", "mt_0123456789abcdefghijABCDEFGHIJ"] {
            let expected = format!("{:0>6}", base62::encode(crc32fast::hash(body.as_bytes())));
            assert_eq!(checksum_of(body), expected.as_bytes(), "{body:?}");
        }
    }

    #[test]
    fn two_keys_differ() {
        assert_ne!(TokenKey::generate().reveal(), TokenKey::generate().reveal());
    }

    #[test]
    fn any_single_character_typo_is_caught_by_the_checksum_or_shape() {
        let key = TokenKey::generate().reveal().to_owned();
        for i in KEY_PREFIX.len()..key.len() {
            let mut typo = key.clone().into_bytes();
            typo[i] = if typo[i] == b'a' { b'b' } else { b'a' };
            let typo = String::from_utf8(typo).unwrap();
            assert!(
                TokenKey::parse(&typo).is_err(),
                "typo at {i} must be refused"
            );
        }
    }

    #[test]
    fn malformed_keys_are_refused_with_a_reason() {
        let key = TokenKey::generate().reveal().to_owned();
        assert_eq!(
            TokenKey::parse("").unwrap_err(),
            KeyFormatError::WrongPrefix
        );
        assert_eq!(
            TokenKey::parse("xx_abc").unwrap_err(),
            KeyFormatError::WrongPrefix
        );
        assert_eq!(
            TokenKey::parse(&key[..KEY_LEN - 1]).unwrap_err(),
            KeyFormatError::WrongLength
        );
        let with_dash = format!("{}-{}", &key[..10], &key[11..]);
        assert_eq!(
            TokenKey::parse(&with_dash).unwrap_err(),
            KeyFormatError::NotBase62
        );
        let multibyte = format!("{}é{}", &key[..10], &key[12..]);
        assert!(TokenKey::parse(&multibyte).is_err());
    }

    #[test]
    fn debug_output_never_contains_the_key() {
        let key = TokenKey::generate();
        assert!(!format!("{key:?}").contains(key.reveal()));
        assert_eq!(format!("{:?}", key.digest()), "KeyDigest(***)");
    }

    mod properties {
        use proptest::prelude::*;

        use super::*;

        /// Secrets as `generate` draws them: 30 base62 characters.
        fn secret() -> impl Strategy<Value = String> {
            proptest::string::string_regex("[0-9A-Za-z]{30}").unwrap()
        }

        proptest! {
            #[test]
            fn every_well_formed_key_parses_back_to_itself(secret in secret()) {
                let key = TokenKey::with_secret(&secret);
                prop_assert_eq!(key.reveal().len(), KEY_LEN);
                let parsed = TokenKey::parse(key.reveal()).expect("a well-formed key must parse");
                prop_assert_eq!(parsed.reveal(), key.reveal());
                prop_assert_eq!(parsed.digest(), key.digest());
                prop_assert!(key.reveal().starts_with(&parsed.display_prefix()));
            }

            /// CRC-32 catches every error confined to 32 bits, so one substituted character,
            /// anywhere in the key (checksum included), can never slip through.
            #[test]
            fn any_single_character_substitution_is_refused(
                secret in secret(),
                at in 0..KEY_LEN,
                replacement in any::<char>(),
            ) {
                let key = TokenKey::with_secret(&secret);
                let original = key.reveal().as_bytes()[at] as char;
                prop_assume!(replacement != original);
                let mut typo: Vec<char> = key.reveal().chars().collect();
                typo[at] = replacement;
                let typo: String = typo.into_iter().collect();
                prop_assert!(TokenKey::parse(&typo).is_err(), "{:?} must be refused", typo);
            }

            #[test]
            fn parse_never_panics_on_arbitrary_text(text in any::<String>()) {
                if let Ok(key) = TokenKey::parse(&text) {
                    prop_assert_eq!(key.reveal(), text.as_str());
                }
            }

            /// Near misses: the right prefix followed by anything, multibyte characters included,
            /// which would split a character if the shape were not checked before slicing.
            #[test]
            fn parse_never_panics_on_near_misses(tail in "\\PC{0,45}") {
                let text = format!("{KEY_PREFIX}{tail}");
                if let Ok(key) = TokenKey::parse(&text) {
                    prop_assert_eq!(key.reveal(), text.as_str());
                    prop_assert_eq!(key.reveal().len(), KEY_LEN);
                }
            }
        }
    }
}
