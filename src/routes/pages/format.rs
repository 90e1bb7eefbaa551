//! Times as people read them: "in 23 hours", "5 minutes ago", "never", "expired".

use chrono::{DateTime, TimeDelta, Utc};

/// "in 3 days" for the future, "5 minutes ago" for the past, "just now" around the present.
/// Rounds down, so a token that expires in 23 h 59 min shows "in 23 hours".
pub fn relative(at: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let delta = at - now;
    let future = delta > TimeDelta::zero();
    let seconds = delta.num_seconds().unsigned_abs();
    if seconds < 45 {
        return "just now".to_owned();
    }
    let (count, unit) = match seconds {
        s if s < 3600 => ((s / 60).max(1), "minute"),
        s if s < 86_400 => (s / 3600, "hour"),
        s if s < 30 * 86_400 => (s / 86_400, "day"),
        s if s < 365 * 86_400 => (s / (30 * 86_400), "month"),
        s => (s / (365 * 86_400), "year"),
    };
    let plural = if count == 1 { "" } else { "s" };
    if future {
        format!("in {count} {unit}{plural}")
    } else {
        format!("{count} {unit}{plural} ago")
    }
}

/// The expiry column: "never", "expired", or how long is left.
pub fn expiry(expires_at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> String {
    match expires_at {
        None => "never".to_owned(),
        Some(at) if at <= now => "expired".to_owned(),
        Some(at) => relative(at, now),
    }
}

/// The last-used column: "never", or how long ago.
pub fn last_used(last_used_at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> String {
    match last_used_at {
        None => "never".to_owned(),
        Some(at) => relative(at, now),
    }
}

/// The exact time, for a tooltip and `<time datetime>`.
pub fn exact(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds_from_now: i64) -> (DateTime<Utc>, DateTime<Utc>) {
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        (now + TimeDelta::seconds(seconds_from_now), now)
    }

    #[test]
    fn future_and_past_round_down_to_whole_units() {
        let cases = [
            (24 * 3600 - 60, "in 23 hours"),
            (5 * 60 + 30, "in 5 minutes"),
            (-5 * 60, "5 minutes ago"),
            (-60, "1 minute ago"),
            (-10, "just now"),
            (7 * 86_400, "in 7 days"),
            (90 * 86_400, "in 3 months"),
            (-400 * 86_400, "1 year ago"),
        ];
        for (offset, expected) in cases {
            let (when, now) = at(offset);
            assert_eq!(relative(when, now), expected, "offset {offset}s");
        }
    }

    #[test]
    fn expiry_says_never_and_expired() {
        let (past, now) = at(-1);
        assert_eq!(expiry(None, now), "never");
        assert_eq!(expiry(Some(past), now), "expired");
        assert_eq!(expiry(Some(now), now), "expired", "expiry is exclusive");
        assert_eq!(last_used(None, now), "never");
    }
}
