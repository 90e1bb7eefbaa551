//! Yes/no fields, read one way in every form and body: `on`, `true` or `1` is yes; `false` or
//! `0` (or the field left out, with `#[serde(default)]`) is no; anything else is refused, so a
//! form never grants what its sender meant to withhold (`is_admin=false` is no admin).
//!
//! ```ignore
//! #[serde(default, deserialize_with = "checkbox::deserialize")]
//! is_admin: bool,
//! ```

use std::fmt;

use serde::{Deserializer, de};

/// What a yes/no field may say; the error names these, never the value sent.
const EXPECTED: &str = "a yes/no value: on, true or 1; false or 0";

pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    deserializer.deserialize_any(Checkbox)
}

/// The text of a yes/no field, or `None` when it is neither.
pub fn parse(text: &str) -> Option<bool> {
    match text {
        "on" | "true" | "1" => Some(true),
        "false" | "0" => Some(false),
        _ => None,
    }
}

struct Checkbox;

impl<'de> de::Visitor<'de> for Checkbox {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(EXPECTED)
    }

    fn visit_bool<E: de::Error>(self, value: bool) -> Result<bool, E> {
        Ok(value)
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<bool, E> {
        parse(text).ok_or_else(|| E::custom(format_args!("expected {EXPECTED}")))
    }

    fn visit_u64<E: de::Error>(self, number: u64) -> Result<bool, E> {
        match number {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(E::custom(format_args!("expected {EXPECTED}"))),
        }
    }

    fn visit_i64<E: de::Error>(self, number: i64) -> Result<bool, E> {
        match u64::try_from(number) {
            Ok(number) => self.visit_u64(number),
            Err(_) => Err(E::custom(format_args!("expected {EXPECTED}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    #[derive(Deserialize, Debug)]
    struct Form {
        #[serde(default, deserialize_with = "super::deserialize")]
        flag: bool,
    }

    fn form(body: &str) -> Result<bool, String> {
        serde_urlencoded::from_str::<Form>(body)
            .map(|f| f.flag)
            .map_err(|e| e.to_string())
    }

    fn json(body: &str) -> Result<bool, String> {
        serde_json::from_str::<Form>(body)
            .map(|f| f.flag)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn forms_and_json_read_yes_no_and_absent_alike() {
        for yes in ["flag=on", "flag=true", "flag=1"] {
            assert_eq!(form(yes), Ok(true), "{yes}");
        }
        for no in ["", "flag=false", "flag=0"] {
            assert_eq!(form(no), Ok(false), "{no:?}");
        }
        for (body, expected) in [
            (r#"{"flag":true}"#, true),
            (r#"{"flag":"on"}"#, true),
            (r#"{"flag":1}"#, true),
            (r#"{"flag":false}"#, false),
            (r#"{"flag":"0"}"#, false),
            ("{}", false),
        ] {
            assert_eq!(json(body), Ok(expected), "{body}");
        }
    }

    #[test]
    fn anything_else_is_refused_without_repeating_it() {
        for bad in [
            "flag=yes",
            "flag=",
            "flag=False",
            "flag=2",
            "flag=on&flag=on",
        ] {
            let error = form(bad).expect_err(bad);
            assert!(!error.contains("yes\""), "{error}");
        }
        for bad in [
            r#"{"flag":"yes"}"#,
            r#"{"flag":2}"#,
            r#"{"flag":null}"#,
            r#"{"flag":[]}"#,
        ] {
            assert!(json(bad).is_err(), "{bad}");
        }
    }
}
