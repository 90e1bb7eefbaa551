//! Names people choose and read: usernames and token names, the rules that make them valid, and
//! the folding that decides when two of them are one.

use unicode_normalization::UnicodeNormalization;

use super::Invalid;

pub const USERNAME_MAX_CHARS: usize = 150;
pub const TOKEN_NAME_MAX_CHARS: usize = 64;

/// A username as people type it: 1–150 letters, digits and `.@+-_` (Django's rule), any script,
/// NFKC-normalised as Django does (so composed and decomposed accents are one name). Compared
/// case-insensitively through `key()`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Username(String);

impl Username {
    pub fn parse(text: &str) -> Result<Username, Invalid> {
        let text: String = text.trim().nfkc().collect();
        let fits = |s: &str| (1..=USERNAME_MAX_CHARS).contains(&s.chars().count());
        // The folded key can be longer than the name ("ß" folds to "ss"); both must fit.
        if !fits(&text) || !fits(&fold_case(&text)) {
            return Err(Invalid::new(
                "username",
                format!("must be 1 to {USERNAME_MAX_CHARS} characters"),
            ));
        }
        if !text
            .chars()
            .all(|c| c.is_alphanumeric() || ".@+-_".contains(c))
        {
            return Err(Invalid::new(
                "username",
                "may contain only letters, digits and . @ + - _",
            ));
        }
        Ok(Username(text))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The case-folded form that carries uniqueness.
    pub fn key(&self) -> String {
        fold_case(&self.0)
    }
}

/// Close to Unicode full case folding without a table of our own: upper-casing first makes
/// "ß"/"SS"/"ss" and final/medial sigma meet before lower-casing.
fn fold_case(text: &str) -> String {
    text.to_uppercase().to_lowercase()
}

/// A token name as its owner typed it: trimmed, 1–64 characters of any script, no control
/// characters, otherwise stored literally.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenName(String);

impl TokenName {
    pub fn parse(text: &str) -> Result<TokenName, Invalid> {
        let text = text.trim();
        let length = text.chars().count();
        if length == 0 || length > TOKEN_NAME_MAX_CHARS {
            return Err(Invalid::new(
                "name",
                format!("must be 1 to {TOKEN_NAME_MAX_CHARS} characters"),
            ));
        }
        if has_control_characters(text) {
            return Err(Invalid::new("name", "must not contain control characters"));
        }
        if text.chars().any(is_deceptive_format) {
            return Err(Invalid::new(
                "name",
                "must not contain invisible direction or spacing marks",
            ));
        }
        Ok(TokenName(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Text that cannot be stored faithfully or shown safely: NUL and other control characters
/// (PostgreSQL refuses NUL in text; the rest only ever arrives by accident or malice).
pub(crate) fn has_control_characters(text: &str) -> bool {
    text.chars().any(char::is_control)
}

/// Invisible formatting characters that can make text look like other text: bidirectional
/// overrides and isolates, zero-width spaces, the byte-order mark. (Zero-width joiners stay:
/// emoji sequences need them.)
pub(crate) fn is_deceptive_format(c: char) -> bool {
    matches!(
        c,
        '\u{061C}'
            | '\u{180E}'
            | '\u{200B}'
            | '\u{200E}'
            | '\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{2069}'
            | '\u{FEFF}'
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_fold_case_for_uniqueness_but_keep_their_spelling() {
        let name = Username::parse("  Ærøskøbing.Bob ").unwrap();
        assert_eq!(name.as_str(), "Ærøskøbing.Bob");
        assert_eq!(name.key(), "ærøskøbing.bob");
    }

    #[test]
    fn case_folding_joins_sharp_s_sigma_and_accent_forms() {
        let key = |s: &str| Username::parse(s).unwrap().key();
        assert_eq!(key("Straße"), key("STRASSE"));
        assert_eq!(key("ΣΑΣ"), key("σασ"));
        assert_eq!(
            key("Jose\u{301}"),
            key("JOSÉ"),
            "decomposed and composed accents are one name"
        );
    }

    #[test]
    fn a_name_whose_folded_key_would_not_fit_is_refused() {
        assert!(
            Username::parse(&"ß".repeat(150)).is_err(),
            "folds to 300 characters"
        );
        assert!(Username::parse(&"ß".repeat(75)).is_ok());
    }

    #[test]
    fn usernames_refuse_paths_spaces_and_controls() {
        for bad in ["", "a/b", "a b", "a\u{0}b", "<script>", &"x".repeat(151)] {
            assert!(Username::parse(bad).is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn names_are_trimmed_and_kept_literally() {
        assert_eq!(
            TokenName::parse("  Küche 🌡️ sensor ").unwrap().as_str(),
            "Küche 🌡️ sensor"
        );
        assert_eq!(
            TokenName::parse(&"é".repeat(64))
                .unwrap()
                .as_str()
                .chars()
                .count(),
            64
        );
    }

    #[test]
    fn names_refuse_empty_long_and_control_characters() {
        for bad in [
            "",
            "   ",
            &"x".repeat(65),
            "a\u{0}b",
            "line\nbreak",
            "a\u{202E}b",
            "\u{200B}",
        ] {
            assert!(TokenName::parse(bad).is_err(), "{bad:?} must be refused");
        }
    }
}
