//! Names people choose and read: usernames and token names, the rules that make them valid, and
//! the folding that decides when two of them are one.
//!
//! No name may hold a character that renders as nothing or as a blank (by Unicode property, see
//! `is_invisible`), except the joiners and presentation selectors inside an emoji sequence; and
//! uniqueness is decided on a `skeleton`, so two names that look alike are one name.

use unicode_normalization::UnicodeNormalization;
use unicode_properties::{GeneralCategory, UnicodeEmoji, UnicodeGeneralCategory};

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
        // Hangul fillers are letters (Lo) that render blank: `bob\u{3164}` would pass for `bob`.
        if !text
            .chars()
            .all(|c| (c.is_alphanumeric() && !is_invisible(c)) || ".@+-_".contains(c))
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

    /// The case-folded form that logins look the user up by.
    pub fn key(&self) -> String {
        fold_case(&self.0)
    }

    /// The form that carries uniqueness: no username may look like another.
    pub fn skeleton(&self) -> String {
        skeleton(&self.0)
    }
}

/// Close to Unicode full case folding without a table of our own: upper-casing first makes
/// "ß"/"SS"/"ss" and final/medial sigma meet before lower-casing.
fn fold_case(text: &str) -> String {
    text.to_uppercase().to_lowercase()
}

/// A token name as its owner typed it: trimmed, 1–64 characters of any script, emoji included,
/// nothing invisible (see `invisible_outside_emoji`), otherwise stored literally. Unique per
/// owner by `skeleton`.
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
        if invisible_outside_emoji(text) {
            return Err(Invalid::new(
                "name",
                "must not contain invisible characters, line breaks or blank look-alikes",
            ));
        }
        Ok(TokenName(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The form that carries uniqueness among one owner's tokens.
    pub fn skeleton(&self) -> String {
        skeleton(&self.0)
    }
}

/// What a name looks like, as far as telling names apart goes: NFKC (so full-width and ligature
/// forms meet their plain ones), default-ignorable characters removed, case-folded, mapped to
/// UTS #39 confusable prototypes (Cyrillic `а` and Latin `a`, `0` and `O`) and case-folded again
/// (prototypes can be capitals), and runs of blanks made one space. Two names with one skeleton
/// may look the same, so only one of them may exist.
pub fn skeleton(text: &str) -> String {
    let visible: String = text.nfkc().filter(|c| !is_default_ignorable(*c)).collect();
    let folded = fold_case(&visible);
    let prototypes: String = unicode_security::skeleton(&folded).collect();
    let mut out = String::with_capacity(prototypes.len());
    for word in fold_case(&prototypes).split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

/// Renders as nothing or as a blank, or breaks a line: Default_Ignorable_Code_Point (soft
/// hyphen, combining grapheme joiner, zero-width characters, variation selectors, tags, Hangul
/// fillers...), and the general categories Cf (format), Zl and Zp (line and paragraph
/// separators), Cc (controls).
pub(crate) fn is_invisible(c: char) -> bool {
    is_default_ignorable(c)
        || matches!(
            c.general_category(),
            GeneralCategory::Format
                | GeneralCategory::LineSeparator
                | GeneralCategory::ParagraphSeparator
                | GeneralCategory::Control
        )
}

/// Whether `text` holds an invisible character other than the ones emoji sequences are made
/// of: a zero-width joiner between two emoji (`👨‍👩‍👧`), a presentation selector right after an
/// emoji (`🌡️`). (Skin-tone modifiers and keycap marks are visible anyway.)
pub(crate) fn invisible_outside_emoji(text: &str) -> bool {
    let chars: Vec<char> = text.chars().collect();
    (0..chars.len()).any(|at| hidden_at(&chars, at))
}

/// Whether `chars[at]` is invisible and not part of an emoji sequence.
fn hidden_at(chars: &[char], at: usize) -> bool {
    let c = chars[at];
    if !is_invisible(c) {
        return false;
    }
    let is_emoji = |c: &char| c.is_emoji_char() && !c.is_ascii();
    // The emoji before, past its own presentation selector or skin-tone modifier.
    let emoji_before = || {
        chars[..at]
            .iter()
            .rev()
            .find(|c| !matches!(c, '\u{FE0E}' | '\u{FE0F}') && !is_emoji_modifier(**c))
            .is_some_and(is_emoji)
    };
    let allowed = match c {
        '\u{200D}' => emoji_before() && chars.get(at + 1).is_some_and(is_emoji),
        '\u{FE0E}' | '\u{FE0F}' => at > 0 && chars[at - 1].is_emoji_char(),
        _ => false,
    };
    !allowed
}

fn is_emoji_modifier(c: char) -> bool {
    matches!(c, '\u{1F3FB}'..='\u{1F3FF}')
}

/// Default_Ignorable_Code_Point, from Unicode's DerivedCoreProperties.txt (a unit test checks it
/// against the UTS #39 data of `unicode-security`, which removes exactly these from skeletons).
fn is_default_ignorable(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{034F}'
            | '\u{061C}'
            | '\u{115F}'..='\u{1160}'
            | '\u{17B4}'..='\u{17B5}'
            | '\u{180B}'..='\u{180F}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}'
            | '\u{3164}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FEFF}'
            | '\u{FFA0}'
            | '\u{FFF0}'..='\u{FFF8}'
            | '\u{1BCA0}'..='\u{1BCA3}'
            | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0000}'..='\u{E0FFF}'
    )
}

/// `text` with every invisible character written as an escape (`\u{ad}`), for text people read
/// to tell names apart, such as the audit log; emoji sequences are kept as they are.
pub fn escape_invisible(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    for (at, &c) in chars.iter().enumerate() {
        if hidden_at(&chars, at) {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

/// Text that cannot be stored faithfully or shown safely: NUL and other control characters
/// (PostgreSQL refuses NUL in text; the rest only ever arrives by accident or malice).
pub(crate) fn has_control_characters(text: &str) -> bool {
    text.chars().any(char::is_control)
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

    #[test]
    fn invisible_characters_are_refused_in_names_but_emoji_sequences_stay() {
        for c in [
            '\u{00AD}',
            '\u{034F}',
            '\u{FE0F}',
            '\u{E0061}',
            '\u{200C}',
            '\u{200B}',
            '\u{3164}',
            '\u{115F}',
            '\u{FFA0}',
            '\u{2028}',
            '\u{2029}',
            '\u{202E}',
            '\u{2060}',
            '\u{FEFF}',
        ] {
            let name = format!("thermo{c}stat");
            assert!(TokenName::parse(&name).is_err(), "{c:?} in a token name");
            assert!(
                Username::parse(&format!("bo{c}b")).is_err(),
                "{c:?} in a username"
            );
        }
        for good in [
            "🌡️",
            "👨‍👩‍👧",
            "Küche 🌡️ sensor",
            "👍🏽",
            "❤️‍🔥",
            "1️⃣",
            "東京 sensor",
        ] {
            assert!(TokenName::parse(good).is_ok(), "{good:?} must stay valid");
        }
        for bad in [
            "a\u{200D}b",
            "\u{200D}👩",
            "👨\u{200D}",
            "x\u{FE0F}",
            "\u{FE0F}",
        ] {
            assert!(
                TokenName::parse(bad).is_err(),
                "{bad:?}: a joiner or selector outside emoji"
            );
        }
    }

    #[test]
    fn look_alike_names_share_a_skeleton_and_different_ones_do_not() {
        let same = |a: &str, b: &str| skeleton(a) == skeleton(b);
        assert!(same("thermostat", "Thermostat"));
        assert!(
            same("thermostat", "ｔｈｅｒｍｏｓｔａｔ"),
            "full-width forms"
        );
        assert!(same("thermostat", "thermοstat"), "Greek omicron");
        assert!(same("alice", "аlice"), "Cyrillic a");
        assert!(same("bob", "B0B"), "zero and capital O");
        assert!(same("🌡️", "🌡"), "the presentation selector is ignorable");
        assert!(same("👨‍👩‍👧", "👨👩👧"));
        assert!(same("kitchen  sensor", "kitchen sensor"));
        assert!(!same("thermostat", "thermostats"));
        assert!(!same("alice", "alicia"));
        assert!(!same("🌡️", "👍"));
    }

    #[test]
    fn the_default_ignorable_table_matches_the_uts39_data() {
        // `unicode_security::skeleton` drops exactly the default-ignorable code points.
        for c in (0..=0x10FFFFu32).filter_map(char::from_u32) {
            let dropped = unicode_security::skeleton(&c.to_string()).next().is_none();
            assert_eq!(is_default_ignorable(c), dropped, "U+{:04X}", c as u32);
        }
    }

    #[test]
    fn escapes_show_what_renders_as_nothing() {
        assert_eq!(escape_invisible("admin\u{AD}"), r"admin\u{ad}");
        assert_eq!(escape_invisible("bob\u{3164}"), r"bob\u{3164}");
        assert_eq!(escape_invisible("a\u{2028}b"), r"a\u{2028}b");
        assert_eq!(escape_invisible("👨‍👩‍👧 🌡️"), "👨‍👩‍👧 🌡️");
    }
}
