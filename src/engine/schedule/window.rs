//! `Window`: a weekly deploy window in local time ("Mon-Fri 09:00-16:00 Europe/Amsterdam"):
//! its parsing, canonical text, and open/next-open/close questions across weekends and DST.
//!
//! The window is open at an instant when the local clock then reads an enabled day and a
//! time in [start, end). So on a fall-back day a repeated hour inside the window is open
//! both times, and a window hour skipped by spring-forward simply does not happen.

use std::fmt;

use jiff::Timestamp;
use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;

use super::{from_ms, occurrences, to_ms, zone};

const DAY_NAMES: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
const FULL_NAMES: [&str; 7] = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];
/// Days looked at for the next opening or closing: a week and a margin.
const SCAN_DAYS: i64 = 9;
const DAY_MS: i64 = 24 * 3600 * 1000;

/// A deploy window: days of the week (bit 0 = Monday), local [start, end) in minutes of the
/// day (end may be 24:00), and the zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    days: u8,
    start: u16,
    end: u16,
    tz_name: String,
    zone: TimeZone,
}

impl Window {
    /// Parses "DAYS HH:MM-HH:MM ZONE": DAYS is `daily` or a comma list of days and day
    /// ranges (Mon..Sun or full names, any case; a range may wrap: Fri-Mon).
    pub fn parse(text: &str) -> Result<Window, String> {
        let parts: Vec<&str> = text.split_whitespace().collect();
        let [days, times, tz] = parts[..] else {
            return Err(format!(
                "window: expected DAYS HH:MM-HH:MM ZONE like \"Mon-Fri 09:00-16:00 Europe/Amsterdam\", got {text:?}"
            ));
        };
        let days = parse_days(days)?;
        let (start, end) = times
            .split_once('-')
            .ok_or_else(|| format!("window: expected times HH:MM-HH:MM, got {times:?}"))?;
        let (start, end) = (clock(start, false)?, clock(end, true)?);
        if end <= start {
            return Err(format!(
                "window: the end {} must be after the start {}",
                hhmm(end),
                hhmm(start)
            ));
        }
        Ok(Window {
            days,
            start,
            end,
            tz_name: tz.to_string(),
            zone: zone(tz)?,
        })
    }

    /// Whether the window is open at `at_ms`.
    pub fn contains(&self, at_ms: u64) -> bool {
        from_ms(at_ms).is_some_and(|at| self.open_at(at))
    }

    /// The next instant >= `at_ms` when the window is open (`at_ms` itself when open now).
    /// `u64::MAX` if it does not open within a week and a margin (a window that lies wholly
    /// inside a skipped hour on its only day).
    pub fn next_open(&self, at_ms: u64) -> u64 {
        if self.contains(at_ms) {
            return at_ms;
        }
        self.first_change(at_ms, self.start, true)
            .unwrap_or(u64::MAX)
    }

    /// When the current opening ends (only meaningful when `contains(at_ms)`; `at_ms` itself
    /// when closed). `u64::MAX` when it never closes (`daily 00:00-24:00`).
    pub fn closes_after(&self, at_ms: u64) -> u64 {
        if !self.contains(at_ms) {
            return at_ms;
        }
        self.first_change(at_ms, self.end, false)
            .unwrap_or(u64::MAX)
    }

    /// The first instant after `at_ms` where the window is `open` (or closed), among the
    /// only places the state can change: the local clock reaching `minute` (every
    /// occurrence) and the zone's transitions.
    fn first_change(&self, at_ms: u64, minute: u16, open: bool) -> Option<u64> {
        let at = from_ms(at_ms)?;
        let horizon = at
            .checked_add(jiff::SignedDuration::from_millis(SCAN_DAYS * DAY_MS))
            .ok()?;
        let mut candidates: Vec<Timestamp> = self
            .zone
            .following(at)
            .map(|t| t.timestamp())
            .take_while(|t| *t <= horizon)
            .collect();
        let mut day = self.zone.to_datetime(at).date().yesterday().ok()?;
        for _ in 0..=SCAN_DAYS {
            candidates.extend(occurrences(&self.zone, wall(day, minute)?));
            day = day.tomorrow().ok()?;
        }
        candidates.sort();
        candidates
            .into_iter()
            .filter(|t| *t > at && self.open_at(*t) == open)
            .find_map(to_ms)
    }

    /// Whether the local clock at `at` reads an enabled day and a time in [start, end).
    fn open_at(&self, at: Timestamp) -> bool {
        let local = self.zone.to_datetime(at);
        let day = local.weekday().to_monday_zero_offset();
        let minute = local.hour() as u16 * 60 + local.minute() as u16;
        self.days & (1 << day) != 0 && (self.start..self.end).contains(&minute)
    }
}

/// The local wall time `minute` minutes into `day` (1440 is the next day's midnight).
fn wall(day: Date, minute: u16) -> Option<DateTime> {
    let (day, minute) = if minute >= 1440 {
        (day.tomorrow().ok()?, minute - 1440)
    } else {
        (day, minute)
    };
    Some(day.at((minute / 60) as i8, (minute % 60) as i8, 0, 0))
}

/// "daily", or a comma list of days and (possibly wrapping) day ranges, as a bit set.
fn parse_days(text: &str) -> Result<u8, String> {
    if text.eq_ignore_ascii_case("daily") {
        return Ok(0x7f);
    }
    let mut set = 0u8;
    for item in text.split(',') {
        let (first, last) = match item.split_once('-') {
            Some((a, b)) => (day(a)?, day(b)?),
            None => (day(item)?, day(item)?),
        };
        let mut d = first;
        set |= 1 << d;
        while d != last {
            d = (d + 1) % 7;
            set |= 1 << d;
        }
    }
    Ok(set)
}

/// A day name (Mon or Monday, any case) as 0 (Monday) ..= 6.
fn day(text: &str) -> Result<u8, String> {
    let lower = text.to_ascii_lowercase();
    DAY_NAMES
        .iter()
        .zip(FULL_NAMES)
        .position(|(short, full)| short.eq_ignore_ascii_case(&lower) || full == lower)
        .map(|i| i as u8)
        .ok_or_else(|| {
            format!("window: expected a day Mon..Sun, a range like Mon-Fri, or daily; got {text:?}")
        })
}

/// "HH:MM" as minutes of the day; "24:00" only as an end.
fn clock(text: &str, is_end: bool) -> Result<u16, String> {
    let bad = || {
        format!("window: expected a time HH:MM (00:00-23:59, or 24:00 as the end), got {text:?}")
    };
    let (h, m) = text.split_once(':').ok_or_else(bad)?;
    let ok = |s: &str| s.len() == 2 && s.bytes().all(|b| b.is_ascii_digit());
    if !ok(h) || !ok(m) {
        return Err(bad());
    }
    let (h, m): (u16, u16) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    match (h, m) {
        (24, 0) if is_end => Ok(1440),
        (0..=23, 0..=59) => Ok(h * 60 + m),
        _ => Err(bad()),
    }
}

fn hhmm(minute: u16) -> String {
    format!("{:02}:{:02}", minute / 60, minute % 60)
}

/// The canonical text: `daily`, one day, a range (`Mon-Fri`, `Fri-Mon`), or a comma list;
/// then the times and the zone. It parses back to the same window.
impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}-{} {}",
            days_text(self.days),
            hhmm(self.start),
            hhmm(self.end),
            self.tz_name
        )
    }
}

/// A day set as text: a single run of days (possibly wrapping past Sunday) as a range.
fn days_text(days: u8) -> String {
    if days == 0x7f {
        return "daily".into();
    }
    let on = |d: u8| days & (1 << (d % 7)) != 0;
    // A run's first day: on, with the day before it off.
    let starts: Vec<u8> = (0..7).filter(|&d| on(d) && !on(d + 6)).collect();
    if let [first] = starts[..] {
        let len = (0..7).take_while(|&i| on(first + i)).count() as u8;
        let last = (first + len - 1) % 7;
        if len == 1 {
            return DAY_NAMES[first as usize].into();
        }
        return format!("{}-{}", DAY_NAMES[first as usize], DAY_NAMES[last as usize]);
    }
    let names: Vec<&str> = (0..7)
        .filter(|&d| on(d))
        .map(|d| DAY_NAMES[d as usize])
        .collect();
    names.join(",")
}
