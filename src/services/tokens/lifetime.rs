//! How long a token lives: one type behind the API's `expires_in_days`, the page's choices and
//! dates, the CLI's `--expires-in` and the session TTL, so that the bounds are checked in one place.

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};

use crate::services::Invalid;

/// A token may live at most this long when it expires at all (100 years), however it is asked for.
pub const MAX_LIFETIME_DAYS: u32 = 36_500;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifetime {
    /// The token never expires.
    Forever,
    /// The token expires this long after it is issued.
    For(TimeDelta),
}

impl Lifetime {
    /// `days` whole days, 1 to `MAX_LIFETIME_DAYS`; `field` names the input in the error.
    pub fn in_days(days: u32, field: &'static str) -> Result<Lifetime, Invalid> {
        if !(1..=MAX_LIFETIME_DAYS).contains(&days) {
            return Err(Invalid::new(
                field,
                format!("must be 1 to {MAX_LIFETIME_DAYS}"),
            ));
        }
        Ok(Lifetime::For(TimeDelta::days(i64::from(days))))
    }

    /// Until the end of `date` (UTC) for a token issued at `at`: a token "until 2027-03-31" works
    /// all that day. The date must be today or later and within `MAX_LIFETIME_DAYS`.
    pub fn until_end_of(date: NaiveDate, at: DateTime<Utc>) -> Result<Lifetime, Invalid> {
        let today = at.date_naive();
        if date < today || (date - today).num_days() > i64::from(MAX_LIFETIME_DAYS) {
            return Err(Invalid::new(
                "expiry_date",
                "must be today or later, and within a hundred years",
            ));
        }
        let end = date
            .succ_opt()
            .and_then(|next| next.and_hms_opt(0, 0, 0))
            .map(|midnight| midnight.and_utc())
            .ok_or_else(|| Invalid::new("expiry_date", "is out of range"))?;
        Ok(Lifetime::For(end - at))
    }

    /// A duration from configuration or the command line (already bounded by
    /// `duration::parse_duration`); one too long to represent is as good as none.
    pub fn from_duration(duration: std::time::Duration) -> Lifetime {
        TimeDelta::from_std(duration).map_or(Lifetime::Forever, Lifetime::For)
    }

    /// When a token issued at `at` expires; `None` for never (or beyond what can be represented).
    pub fn expires_at(self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Lifetime::Forever => None,
            Lifetime::For(delta) => at.checked_add_signed(delta),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noon() -> DateTime<Utc> {
        "2026-11-30T12:00:00Z".parse().unwrap()
    }

    #[test]
    fn days_are_bounded_by_one_and_a_hundred_years() {
        assert_eq!(
            Lifetime::in_days(30, "d").unwrap(),
            Lifetime::For(TimeDelta::days(30))
        );
        assert!(Lifetime::in_days(MAX_LIFETIME_DAYS, "d").is_ok());
        for days in [0, MAX_LIFETIME_DAYS + 1, u32::MAX] {
            let error = Lifetime::in_days(days, "expires_in_days").unwrap_err();
            assert_eq!(error.field, "expires_in_days", "{days} days");
        }
    }

    #[test]
    fn a_date_lasts_to_the_end_of_that_day() {
        let at = noon();
        let today = Lifetime::until_end_of(at.date_naive(), at).unwrap();
        assert_eq!(today, Lifetime::For(TimeDelta::hours(12)));
        assert_eq!(
            today.expires_at(at).unwrap().to_rfc3339(),
            "2026-12-01T00:00:00+00:00"
        );
        let yesterday = at.date_naive().pred_opt().unwrap();
        assert!(Lifetime::until_end_of(yesterday, at).is_err());
        let too_far = at.date_naive() + TimeDelta::days(i64::from(MAX_LIFETIME_DAYS) + 1);
        assert!(Lifetime::until_end_of(too_far, at).is_err());
    }

    #[test]
    fn forever_and_unrepresentable_lifetimes_never_expire() {
        assert_eq!(Lifetime::Forever.expires_at(noon()), None);
        assert_eq!(
            Lifetime::from_duration(std::time::Duration::MAX),
            Lifetime::Forever
        );
        assert_eq!(Lifetime::For(TimeDelta::MAX).expires_at(noon()), None);
    }
}
