//! Usage as pictures: an hourly bar chart (uses, and refusals stacked on top) drawn as SVG by
//! the templates, with its numbers as a table for screen readers and anyone without images. No
//! JavaScript, nothing fetched: the page carries everything.

use chrono::{DateTime, TimeDelta, Timelike, Utc};

use crate::services::{hour_start, tokens::usage::Hour};

/// Pixels per hour and the plot's height.
const HOUR_WIDTH: i64 = 4;
const PLOT_HEIGHT: f64 = 100.0;

/// One hour's bar: the uses from the baseline up, the refusals above them.
pub struct Bar {
    pub x: i64,
    pub uses_y: String,
    pub uses_height: String,
    pub refused_y: String,
    pub refused_height: String,
    /// What a pointer over it shows.
    pub title: String,
}

/// A day boundary on the time axis.
pub struct Tick {
    pub x: i64,
    pub label: String,
}

/// A row of the text alternative.
pub struct ChartRow {
    pub hour: String,
    pub uses: i64,
    pub refused: i64,
}

pub struct UsageChart {
    /// The figure's id (unique on its page), and what its two series count.
    pub id: &'static str,
    pub uses_label: &'static str,
    pub refused_label: &'static str,
    pub width: i64,
    pub height: i64,
    pub plot_height: i64,
    pub days: i64,
    pub bars: Vec<Bar>,
    pub ticks: Vec<Tick>,
    /// The busiest hour's uses and refusals: the top of the scale.
    pub max: i64,
    pub total_uses: i64,
    pub total_refused: i64,
    /// Hours with any activity, newest first.
    pub rows: Vec<ChartRow>,
}

impl UsageChart {
    /// The same chart under another id, its series named otherwise (logins and failed logins).
    pub fn named(
        self,
        id: &'static str,
        uses_label: &'static str,
        refused_label: &'static str,
    ) -> UsageChart {
        UsageChart {
            id,
            uses_label,
            refused_label,
            ..self
        }
    }

    /// The last `days` days up to `now`, hour by hour.
    pub fn hourly(hours: &[Hour], days: i64, now: DateTime<Utc>) -> UsageChart {
        let this_hour = hour_start(now);
        let slots = days * 24;
        let first = this_hour - TimeDelta::hours(slots - 1);
        let hours: Vec<&Hour> = hours
            .iter()
            .filter(|h| h.hour >= first && h.hour <= this_hour)
            .collect();
        let max = hours
            .iter()
            .map(|h| h.uses + h.refused)
            .max()
            .unwrap_or(0)
            .max(1);
        let scale = |count: i64| count as f64 * PLOT_HEIGHT / max as f64;
        let mut bars = Vec::new();
        for hour in &hours {
            let slot = (hour.hour - first).num_hours();
            let uses = scale(hour.uses);
            let refused = scale(hour.refused);
            bars.push(Bar {
                x: slot * HOUR_WIDTH,
                uses_y: format!("{:.1}", PLOT_HEIGHT - uses),
                uses_height: format!("{uses:.1}"),
                refused_y: format!("{:.1}", PLOT_HEIGHT - uses - refused),
                refused_height: format!("{refused:.1}"),
                title: format!(
                    "{}: {} uses, {} refused",
                    hour.hour.format("%Y-%m-%d %H:00 UTC"),
                    hour.uses,
                    hour.refused
                ),
            });
        }
        // A line at each UTC midnight in the window, labelled with the day it begins.
        let ticks = (0..slots)
            .map(|slot| (slot, first + TimeDelta::hours(slot)))
            .filter(|(_, at)| at.hour() == 0)
            .map(|(slot, at)| Tick {
                x: slot * HOUR_WIDTH,
                label: at.format("%b %-d").to_string(),
            })
            .collect();
        let rows = hours
            .iter()
            .rev()
            .map(|h| ChartRow {
                hour: h.hour.format("%Y-%m-%d %H:00").to_string(),
                uses: h.uses,
                refused: h.refused,
            })
            .collect();
        UsageChart {
            id: "usage-chart",
            uses_label: "uses",
            refused_label: "refused",
            width: slots * HOUR_WIDTH,
            height: PLOT_HEIGHT as i64 + 16,
            plot_height: PLOT_HEIGHT as i64,
            days,
            bars,
            ticks,
            max,
            total_uses: hours.iter().map(|h| h.uses).sum(),
            total_refused: hours.iter().map(|h| h.refused).sum(),
            rows,
        }
    }
}

/// A token's last days at a glance, for its row in a list: one bar per day.
pub struct Sparkline {
    pub bars: Vec<SparkBar>,
    /// The same in words (the image's accessible name).
    pub label: String,
}

pub struct SparkBar {
    pub x: i64,
    pub y: String,
    pub height: String,
    pub refused: bool,
}

/// Pixels per day and the sparkline's height.
const SPARK_DAY_WIDTH: i64 = 6;
pub const SPARK_HEIGHT: f64 = 14.0;

impl Sparkline {
    /// Daily totals of the last `days` days up to `now` (today last); refusals stacked on uses.
    pub fn daily<'a>(
        hours: impl IntoIterator<Item = &'a Hour>,
        days: i64,
        now: DateTime<Utc>,
    ) -> Sparkline {
        let today = now.date_naive();
        let mut uses = vec![0i64; days as usize];
        let mut refused = vec![0i64; days as usize];
        for hour in hours {
            let back = (today - hour.hour.date_naive()).num_days();
            if (0..days).contains(&back) {
                let day = (days - 1 - back) as usize;
                uses[day] += hour.uses;
                refused[day] += hour.refused;
            }
        }
        let max = uses
            .iter()
            .zip(&refused)
            .map(|(u, r)| u + r)
            .max()
            .unwrap_or(0)
            .max(1);
        let scale = |count: i64| count as f64 * SPARK_HEIGHT / max as f64;
        let mut bars = Vec::new();
        for day in 0..days as usize {
            let x = day as i64 * SPARK_DAY_WIDTH;
            let used = scale(uses[day]);
            let refusals = scale(refused[day]);
            if uses[day] > 0 {
                bars.push(SparkBar {
                    x,
                    y: format!("{:.1}", SPARK_HEIGHT - used),
                    height: format!("{used:.1}"),
                    refused: false,
                });
            }
            if refused[day] > 0 {
                bars.push(SparkBar {
                    x,
                    y: format!("{:.1}", SPARK_HEIGHT - used - refusals),
                    height: format!("{refusals:.1}"),
                    refused: true,
                });
            }
        }
        let (total_uses, total_refused): (i64, i64) = (uses.iter().sum(), refused.iter().sum());
        Sparkline {
            bars,
            label: format!(
                "last {days} days: {total_uses} uses, {total_refused} refused; daily uses {}",
                uses.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hour(at: &str, uses: i64, refused: i64) -> Hour {
        Hour {
            hour: DateTime::parse_from_rfc3339(at).unwrap().to_utc(),
            uses,
            refused,
            tokens: 1,
        }
    }

    #[test]
    fn bars_sit_in_their_hour_scaled_to_the_busiest_with_totals_and_rows() {
        let now = DateTime::parse_from_rfc3339("2026-12-07T10:30:00Z")
            .unwrap()
            .to_utc();
        let hours = [
            hour("2026-11-20T10:00:00Z", 99, 0),
            hour("2026-12-07T08:00:00Z", 30, 10),
            hour("2026-12-07T10:00:00Z", 20, 0),
        ];
        let chart = UsageChart::hourly(&hours, 7, now);
        assert_eq!(chart.width, 7 * 24 * HOUR_WIDTH);
        assert_eq!(
            chart.bars.len(),
            2,
            "the hour before the window is left out"
        );
        assert_eq!(chart.max, 40, "the scale is the window's busiest hour");
        let last = &chart.bars[1];
        assert_eq!(
            last.x,
            (7 * 24 - 1) * HOUR_WIDTH,
            "this hour is the last slot"
        );
        let first = &chart.bars[0];
        assert_eq!(first.x, (7 * 24 - 3) * HOUR_WIDTH);
        assert_eq!(first.title, "2026-12-07 08:00 UTC: 30 uses, 10 refused");
        assert_eq!((chart.total_uses, chart.total_refused), (50, 10));
        assert_eq!(chart.rows.len(), 2);
        assert_eq!(chart.rows[0].hour, "2026-12-07 10:00", "newest first");
        assert_eq!(chart.ticks.len(), 7);
        assert_eq!(chart.ticks[0].label, "Dec 1");
    }

    #[test]
    fn a_sparkline_has_a_bar_per_active_day_today_last() {
        let now = DateTime::parse_from_rfc3339("2026-12-07T10:30:00Z")
            .unwrap()
            .to_utc();
        let hours = [
            hour("2026-11-30T10:00:00Z", 5, 0),
            hour("2026-12-01T08:00:00Z", 3, 0),
            hour("2026-12-07T08:00:00Z", 4, 2),
            hour("2026-12-07T09:00:00Z", 2, 0),
        ];
        let spark = Sparkline::daily(&hours, 7, now);
        assert_eq!(
            spark.label, "last 7 days: 9 uses, 2 refused; daily uses 3, 0, 0, 0, 0, 0, 6",
            "Nov 30 is more than 7 days back"
        );
        let xs: Vec<(i64, bool)> = spark.bars.iter().map(|b| (b.x, b.refused)).collect();
        assert_eq!(
            xs,
            [(0, false), (36, false), (36, true)],
            "Dec 1 first, today last with its refusals on top"
        );
        assert_eq!(spark.bars[1].height, "10.5", "6 of the busiest day's 8");
    }
}
