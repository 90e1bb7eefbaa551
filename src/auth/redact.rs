//! Keys pasted where they do not belong (a URL, a wrongly typed field) are cut out of any text
//! bound for the log: whatever parses as a key (`mt_` + base62 + a valid checksum) becomes
//! `mt_***`. The checksum makes a false match practically impossible.

use std::borrow::Cow;

use super::key::{KEY_LEN, KEY_PREFIX, TokenKey};

/// What a key is replaced with.
pub const REDACTED_KEY: &str = "mt_***";

/// `text` with every key in it replaced by `REDACTED_KEY`; borrowed when it holds none.
pub fn redact_keys(text: &str) -> Cow<'_, str> {
    if !text.contains(KEY_PREFIX) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut changed = false;
    while let Some(at) = rest.find(KEY_PREFIX) {
        let candidate = rest.get(at..at + KEY_LEN);
        if let Some(candidate) = candidate.filter(|c| TokenKey::parse(c).is_ok()) {
            out.push_str(&rest[..at]);
            out.push_str(REDACTED_KEY);
            rest = &rest[at + candidate.len()..];
            changed = true;
        } else {
            out.push_str(&rest[..at + KEY_PREFIX.len()]);
            rest = &rest[at + KEY_PREFIX.len()..];
        }
    }
    if !changed {
        return Cow::Borrowed(text);
    }
    out.push_str(rest);
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_anywhere_in_text_are_cut_out_and_other_text_is_kept() {
        let key = TokenKey::generate();
        let key = key.reveal();
        assert_eq!(
            redact_keys(&format!("/tokens/{key}/x?k={key}")),
            "/tokens/mt_***/x?k=mt_***"
        );
        assert_eq!(redact_keys(&format!("\"{key}\"")), "\"mt_***\"");
        assert_eq!(redact_keys(&format!("{key}{key}")), "mt_***mt_***");
        let mut typo = key.to_owned().into_bytes();
        typo[5] = if typo[5] == b'a' { b'b' } else { b'a' };
        let typo = String::from_utf8(typo).unwrap();
        assert_eq!(redact_keys(&typo), typo, "no checksum, no key");
        assert!(matches!(
            redact_keys("mt_ mt_short é mt_"),
            Cow::Borrowed(_)
        ));
        assert_eq!(redact_keys("plain"), "plain");
    }
}
