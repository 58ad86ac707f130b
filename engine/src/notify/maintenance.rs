//! Recurring maintenance windows: weekday and time-of-day ranges in a time zone
//! during which matching alerts are recorded but not sent.

use jiff::civil::{Time, Weekday};
use jiff::tz::TimeZone;

use super::matchers::Matchers;
use crate::model::{Labels, Timestamp};

/// One recurring window.
#[derive(Debug, Clone)]
pub struct MaintenanceWindow {
    /// Its name.
    pub name: String,
    /// Which alerts it mutes (empty: all).
    pub matchers: Matchers,
    /// Days a window starts on; empty = every day.
    pub weekdays: Vec<Weekday>,
    /// Start time of day.
    pub start: Time,
    /// End time of day; at or before `start`, the window ends the next day.
    pub end: Time,
    /// The time zone the times are in.
    pub tz: TimeZone,
    /// The zone's name as written.
    pub tz_name: String,
}

impl MaintenanceWindow {
    /// True when the window is open at `now` (unix ms).
    pub fn is_open(&self, now: Timestamp) -> bool {
        let Ok(ts) = jiff::Timestamp::from_millisecond(now) else {
            return false;
        };
        let z = ts.to_zoned(self.tz.clone());
        let t = z.time();
        let day = z.weekday();
        let starts_on = |d: Weekday| self.weekdays.is_empty() || self.weekdays.contains(&d);
        if self.start < self.end {
            starts_on(day) && t >= self.start && t < self.end
        } else {
            // Past midnight: open from `start` on a start day until `end` the next day.
            (starts_on(day) && t >= self.start) || (starts_on(day.previous()) && t < self.end)
        }
    }

    /// True when the window is open at `now` and matches `labels`.
    pub fn mutes(&self, labels: &Labels, now: Timestamp) -> bool {
        self.matchers.matches(labels) && self.is_open(now)
    }
}

/// Parses `mon` … `sun` (or full names).
pub fn parse_weekday(s: &str) -> Result<Weekday, String> {
    let d = match s.to_ascii_lowercase().as_str() {
        "mon" | "monday" => Weekday::Monday,
        "tue" | "tuesday" => Weekday::Tuesday,
        "wed" | "wednesday" => Weekday::Wednesday,
        "thu" | "thursday" => Weekday::Thursday,
        "fri" | "friday" => Weekday::Friday,
        "sat" | "saturday" => Weekday::Saturday,
        "sun" | "sunday" => Weekday::Sunday,
        _ => {
            return Err(format!(
                "invalid weekday '{s}': use mon, tue, wed, thu, fri, sat or sun"
            ));
        }
    };
    Ok(d)
}

/// Parses `HH:MM` (24-hour).
pub fn parse_clock(s: &str) -> Result<Time, String> {
    let bad = || format!("invalid time of day '{s}': write HH:MM, e.g. '02:30'");
    let (h, m) = s.trim().split_once(':').ok_or_else(bad)?;
    let h: i8 = h.parse().map_err(|_| bad())?;
    let m: i8 = m.parse().map_err(|_| bad())?;
    if h == 24 && m == 0 {
        return Ok(Time::MAX);
    }
    Time::new(h, m, 0, 0).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(days: &[&str], start: &str, end: &str, tz: &str) -> MaintenanceWindow {
        MaintenanceWindow {
            name: "w".into(),
            matchers: Matchers::default(),
            weekdays: days.iter().map(|d| parse_weekday(d).unwrap()).collect(),
            start: parse_clock(start).unwrap(),
            end: parse_clock(end).unwrap(),
            tz: TimeZone::get(tz).unwrap(),
            tz_name: tz.into(),
        }
    }

    fn at(s: &str) -> Timestamp {
        s.parse::<jiff::Timestamp>().unwrap().as_millisecond()
    }

    #[test]
    fn daytime_window_in_a_time_zone() {
        // 2026-11-23 is a Monday.
        let w = window(&["mon"], "02:00", "03:30", "Europe/Berlin");
        assert!(w.is_open(at("2026-11-23T01:15:00Z")), "02:15 in Berlin");
        assert!(
            !w.is_open(at("2026-11-23T02:30:00Z")),
            "03:30 in Berlin: closed"
        );
        assert!(!w.is_open(at("2026-11-24T01:15:00Z")), "Tuesday");
    }

    #[test]
    fn window_past_midnight_belongs_to_its_start_day() {
        let w = window(&["fri"], "22:00", "02:00", "UTC");
        // 2026-11-27 is a Friday.
        assert!(w.is_open(at("2026-11-27T23:00:00Z")));
        assert!(w.is_open(at("2026-11-28T01:59:00Z")), "Saturday morning");
        assert!(!w.is_open(at("2026-11-28T23:00:00Z")), "Saturday night");
        assert!(!w.is_open(at("2026-11-27T21:59:00Z")));
    }

    #[test]
    fn parsing() {
        assert!(parse_clock("25:00").is_err());
        assert!(parse_clock("2pm").is_err());
        assert_eq!(parse_clock("24:00").unwrap(), Time::MAX);
        assert!(parse_weekday("Funday").is_err());
    }
}
