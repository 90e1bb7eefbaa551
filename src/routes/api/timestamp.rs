//! Times in answers on the hot path (`/api/me/`, introspection), written as chrono's serde writes
//! them (RFC 3339, UTC as `Z`, as many fraction digits as are non-zero: 0, 3, 6 or 9) but into a
//! buffer on the stack instead of through `fmt`, which took a third of the time spent building
//! `/api/me/`'s answer. Anything unusual (a year outside 0–9999, a leap second) goes to chrono.
//! `#[serde(serialize_with = "timestamp::serialize")]`, or `timestamp::option::serialize`.

use chrono::{DateTime, Datelike, Timelike, Utc};
use serde::{Serialize, Serializer};

pub fn serialize<S: Serializer>(at: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
    let mut buffer = [0u8; 30];
    match write(at, &mut buffer) {
        Some(text) => serializer.serialize_str(text),
        None => at.serialize(serializer),
    }
}

/// The same text as a `String` (for a header).
pub fn rfc3339(at: DateTime<Utc>) -> String {
    let mut buffer = [0u8; 30];
    match write(&at, &mut buffer) {
        Some(text) => text.to_owned(),
        None => at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
    }
}

pub mod option {
    use super::*;

    pub fn serialize<S: Serializer>(
        at: &Option<DateTime<Utc>>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match at {
            Some(at) => super::serialize(at, serializer),
            None => serializer.serialize_none(),
        }
    }
}

/// `2026-12-02T15:32:45.049908339Z` into `buffer`, or `None` where chrono should write it.
fn write<'a>(at: &DateTime<Utc>, buffer: &'a mut [u8; 30]) -> Option<&'a str> {
    let year = at.year();
    let nanos = at.nanosecond();
    if !(0..=9999).contains(&year) || nanos >= 1_000_000_000 {
        return None;
    }
    let mut put = |at: usize, value: u32, width: usize| {
        let mut value = value;
        for slot in buffer[at..at + width].iter_mut().rev() {
            *slot = b'0' + (value % 10) as u8;
            value /= 10;
        }
    };
    put(0, year as u32, 4);
    put(5, at.month(), 2);
    put(8, at.day(), 2);
    put(11, at.hour(), 2);
    put(14, at.minute(), 2);
    put(17, at.second(), 2);
    let fraction = match nanos {
        0 => 0,
        n if n % 1_000_000 == 0 => 3,
        n if n % 1_000 == 0 => 6,
        _ => 9,
    };
    if fraction > 0 {
        put(20, nanos / 10u32.pow(9 - fraction as u32), fraction);
    }
    buffer[4] = b'-';
    buffer[7] = b'-';
    buffer[10] = b'T';
    buffer[13] = b':';
    buffer[16] = b':';
    let end = if fraction > 0 {
        buffer[19] = b'.';
        20 + fraction
    } else {
        19
    };
    buffer[end] = b'Z';
    std::str::from_utf8(&buffer[..=end]).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ours(at: &DateTime<Utc>) -> String {
        serialize(at, serde_json::value::Serializer)
            .unwrap()
            .as_str()
            .unwrap()
            .to_owned()
    }

    fn chronos(at: &DateTime<Utc>) -> String {
        serde_json::to_value(at)
            .unwrap()
            .as_str()
            .unwrap()
            .to_owned()
    }

    #[test]
    fn every_fraction_width_and_the_fallbacks_match_chrono() {
        for text in [
            "2026-12-02T15:32:45Z",
            "2026-12-02T15:32:45.100Z",
            "2026-12-02T15:32:45.000100Z",
            "2026-12-02T15:32:45.000000001Z",
            "0000-01-01T00:00:00Z",
            "9999-12-31T23:59:59.999999999Z",
        ] {
            let at: DateTime<Utc> = text.parse().unwrap();
            assert_eq!(ours(&at), text, "{text}");
            assert_eq!(ours(&at), chronos(&at), "{text}");
        }
        let day = |year| chrono::NaiveDate::from_ymd_opt(year, 12, 31).unwrap();
        let far_future = day(10_000).and_hms_opt(0, 0, 0).unwrap().and_utc();
        let before_year_zero = day(-1).and_hms_opt(0, 0, 0).unwrap().and_utc();
        let leap_second = day(2016)
            .and_hms_nano_opt(23, 59, 59, 1_500_000_000)
            .unwrap()
            .and_utc();
        for at in [far_future, before_year_zero, leap_second] {
            assert_eq!(ours(&at), chronos(&at), "chrono writes {}", chronos(&at));
        }
    }

    proptest! {
        #[test]
        fn any_time_is_written_as_chrono_writes_it(
            seconds in -62_167_219_200i64..253_402_300_800,
            nanos in prop_oneof![Just(0u32), (0u32..1000).prop_map(|m| m * 1_000_000),
                                 (0u32..1_000_000).prop_map(|u| u * 1000), 0u32..1_000_000_000],
        ) {
            let at = DateTime::from_timestamp(seconds, nanos).unwrap();
            prop_assert_eq!(ours(&at), chronos(&at));
        }
    }
}
