//! Times as people read them: "in 23 hours", "5 minutes ago", "never", "expired".

use chrono::{DateTime, TimeDelta, Utc};

/// "in 3 days" for the future, "5 minutes ago" for the past, "just now" around the present.
/// Rounds to the nearest unit, so a new 30-day token shows "in 30 days" and a new session token
/// "in 24 hours".
pub fn relative(at: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let delta = at - now;
    let future = delta > TimeDelta::zero();
    let seconds = delta.num_seconds().unsigned_abs();
    if seconds < 45 {
        return "just now".to_owned();
    }
    let rounded = |unit: u64| (seconds + unit / 2) / unit;
    let (count, unit) = if rounded(60) < 60 {
        (rounded(60).max(1), "minute")
    } else if rounded(3600) < 48 {
        (rounded(3600), "hour")
    } else if rounded(86_400) < 60 {
        (rounded(86_400), "day")
    } else if rounded(86_400) < 360 {
        (rounded(30 * 86_400), "month")
    } else {
        (rounded(365 * 86_400), "year")
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

/// The exact time, for a tooltip and `<time datetime>` (a valid HTML datetime).
pub fn exact(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds_from_now: i64) -> (DateTime<Utc>, DateTime<Utc>) {
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        (now + TimeDelta::seconds(seconds_from_now), now)
    }

    #[test]
    fn future_and_past_round_to_the_nearest_unit() {
        let cases = [
            (24 * 3600 - 5, "in 24 hours"),
            (23 * 3600 - 5, "in 23 hours"),
            (5 * 60 - 5, "in 5 minutes"),
            (-5 * 60, "5 minutes ago"),
            (-60, "1 minute ago"),
            (-10, "just now"),
            (7 * 86_400 - 5, "in 7 days"),
            (30 * 86_400 - 5, "in 30 days"),
            (90 * 86_400 - 5, "in 3 months"),
            (365 * 86_400 - 5, "in 1 year"),
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
