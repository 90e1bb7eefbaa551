//! Human durations as used in configuration and on the command line: `2s`, `15m`, `24h`, `7d`.

use std::time::Duration;

/// 100 years, the longest duration accepted.
pub const MAX_SECONDS: u64 = 100 * 365 * 24 * 3600;

/// Parses `<positive integer><unit>` with unit `s`, `m`, `h` or `d`. Zero and durations over
/// 100 years are refused: neither is ever what someone meant.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let unit_at = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("'{text}' has no unit; use s, m, h or d, as in 24h"))?;
    let (number, unit) = text.split_at(unit_at);
    let multiplier = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => {
            return Err(format!(
                "'{text}' is not a duration; use s, m, h or d, as in 24h"
            ));
        }
    };
    let count: u64 = number
        .parse()
        .map_err(|_| format!("'{text}' is not a duration; use a whole number, as in 24h"))?;
    let seconds = count
        .checked_mul(multiplier)
        .filter(|s| (1..=MAX_SECONDS).contains(s))
        .ok_or_else(|| format!("'{text}' is out of range (1s to 100 years)"))?;
    Ok(Duration::from_secs(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_each_unit() {
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(604_800)));
    }

    #[test]
    fn refuses_what_is_not_a_positive_bounded_duration() {
        for bad in [
            "",
            "h",
            "24",
            "0s",
            "-1h",
            "1.5h",
            "24 h",
            "1w",
            "99999999999999999999d",
            "٣h",
        ] {
            assert!(parse_duration(bad).is_err(), "'{bad}' must be refused");
        }
    }

    mod properties {
        use proptest::prelude::*;

        use super::*;

        const UNITS: [(&str, u64); 4] = [("s", 1), ("m", 60), ("h", 3600), ("d", 86_400)];

        proptest! {
            #[test]
            fn a_count_and_a_unit_round_trip_within_range(
                count in prop_oneof![0u64..100_000, 0u64..=2 * MAX_SECONDS, Just(u64::MAX)],
                (unit, multiplier) in proptest::sample::select(&UNITS[..]),
            ) {
                let parsed = parse_duration(&format!("{count}{unit}"));
                match count.checked_mul(multiplier) {
                    Some(seconds @ 1..=MAX_SECONDS) => {
                        prop_assert_eq!(parsed, Ok(Duration::from_secs(seconds)));
                    }
                    _ => prop_assert!(parsed.is_err()),
                }
            }

            #[test]
            fn every_accepted_duration_is_within_range(text in any::<String>()) {
                if let Ok(duration) = parse_duration(&text) {
                    prop_assert!((1..=MAX_SECONDS).contains(&duration.as_secs()));
                }
            }
        }
    }
}
