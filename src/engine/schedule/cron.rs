//! `Cron`: 5-field cron expressions (Vixie syntax) evaluated in an IANA time zone, and
//! `next_after` with the module's DST rule (a skipped slot runs once, after the gap; a
//! repeated slot runs once, at its first occurrence).

use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;

use super::{first_instant, from_ms, to_ms, zone};

/// How many local days `next_after` looks ahead: past the longest gap between two matches
/// of any satisfiable expression (29 February on a given weekday can be 28 years apart).
const HORIZON_DAYS: i32 = 29 * 366;

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const WEEKDAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

/// A 5-field cron expression (minute hour day-of-month month day-of-week) in a time zone.
/// Day-of-month and day-of-week are OR-ed when both are restricted (neither starts with
/// `*`), like Vixie cron.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    expr: String,
    tz_name: String,
    zone: TimeZone,
    minutes: u64,
    hours: u64,
    days: u64,
    months: u64,
    weekdays: u64,
    days_star: bool,
    weekdays_star: bool,
}

/// One field's name, bounds and value names.
struct Field {
    name: &'static str,
    min: u8,
    max: u8,
    names: &'static [&'static str],
    /// The first name's number (JAN = 1, SUN = 0).
    names_from: u8,
}

const FIELDS: [Field; 5] = [
    Field {
        name: "minute",
        min: 0,
        max: 59,
        names: &[],
        names_from: 0,
    },
    Field {
        name: "hour",
        min: 0,
        max: 23,
        names: &[],
        names_from: 0,
    },
    Field {
        name: "day-of-month",
        min: 1,
        max: 31,
        names: &[],
        names_from: 0,
    },
    Field {
        name: "month",
        min: 1,
        max: 12,
        names: &MONTHS,
        names_from: 1,
    },
    // 7 is Sunday too; folded onto 0 after parsing.
    Field {
        name: "day-of-week",
        min: 0,
        max: 7,
        names: &WEEKDAYS,
        names_from: 0,
    },
];

impl Cron {
    /// Parses `expr` (or `@hourly`, `@daily`/`@midnight`, `@weekly`, `@monthly`,
    /// `@yearly`/`@annually`) for the zone `tz`.
    pub fn parse(expr: &str, tz: &str) -> Result<Cron, String> {
        let zone = zone(tz)?;
        let text = expr.trim();
        let fields: Vec<&str> = expand_macro(text)?.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(format!(
                "cron: expected 5 fields (minute hour day-of-month month day-of-week), got {} in {text:?}",
                fields.len()
            ));
        }
        let mut sets = [0u64; 5];
        for ((set, field), text) in sets.iter_mut().zip(&FIELDS).zip(&fields) {
            *set = parse_field(field, text)?;
        }
        let weekdays = (sets[4] | (sets[4] >> 7)) & 0x7f;
        Ok(Cron {
            expr: text.to_string(),
            tz_name: tz.to_string(),
            zone,
            minutes: sets[0],
            hours: sets[1],
            days: sets[2],
            months: sets[3],
            weekdays,
            days_star: fields[2].starts_with('*'),
            weekdays_star: fields[4].starts_with('*'),
        })
    }

    /// The expression as given (trimmed).
    pub fn expr(&self) -> &str {
        &self.expr
    }

    /// The zone's name as given.
    pub fn tz(&self) -> &str {
        &self.tz_name
    }

    /// The first fire time strictly after `after_ms`, or `None` when the expression never
    /// matches again (`0 0 31 2 *`) or the time is out of range.
    ///
    /// Local wall times are walked in order and each matching one is mapped to its instant
    /// by the module's DST rule; that mapping never goes backwards, so the first matching
    /// wall time whose instant lies after `after_ms` is the answer. Wall times skipped by a
    /// gap all map to the transition, so they fire once; a repeated hour fires at its first
    /// occurrence only.
    pub fn next_after(&self, after_ms: u64) -> Option<u64> {
        let after = from_ms(after_ms)?;
        let wall = self.zone.to_datetime(after);
        // Every wall time up to `wall` maps to an instant <= `after`: start at the next minute.
        let mut from = Some((wall.hour() as u8, wall.minute() as u8 + 1));
        let mut day = wall.date();
        for _ in 0..HORIZON_DAYS {
            if self.day_matches(day)
                && let Some(found) = self.first_on(day, from, after_ms)
            {
                return Some(found);
            }
            from = None;
            day = day.tomorrow().ok()?;
        }
        None
    }

    /// The first slot on `day` at or after the local (hour, minute) `from` whose instant is
    /// after `after_ms`.
    fn first_on(&self, day: Date, from: Option<(u8, u8)>, after_ms: u64) -> Option<u64> {
        let (from_hour, from_minute) = from.unwrap_or((0, 0));
        for hour in (from_hour..24).filter(|h| self.hours & (1 << h) != 0) {
            let first_minute = if hour == from_hour { from_minute } else { 0 };
            for minute in (first_minute..60).filter(|m| self.minutes & (1 << m) != 0) {
                let wall =
                    DateTime::from_parts(day, jiff::civil::time(hour as i8, minute as i8, 0, 0));
                let at = first_instant(&self.zone, wall).and_then(to_ms);
                if let Some(at) = at.filter(|&at| at > after_ms) {
                    return Some(at);
                }
            }
        }
        None
    }

    /// Month, and day-of-month / day-of-week with Vixie's rule: both must match when either
    /// is `*`, otherwise either may.
    fn day_matches(&self, day: Date) -> bool {
        if self.months & (1 << day.month()) == 0 {
            return false;
        }
        let by_day = self.days & (1 << day.day()) != 0;
        let by_weekday = self.weekdays & (1 << day.weekday().to_sunday_zero_offset()) != 0;
        if self.days_star || self.weekdays_star {
            by_day && by_weekday
        } else {
            by_day || by_weekday
        }
    }
}

/// The five fields an `@` macro stands for; any other text as it is.
fn expand_macro(text: &str) -> Result<&str, String> {
    if !text.starts_with('@') {
        return Ok(text);
    }
    Ok(match text.to_ascii_lowercase().as_str() {
        "@hourly" => "0 * * * *",
        "@daily" | "@midnight" => "0 0 * * *",
        "@weekly" => "0 0 * * 0",
        "@monthly" => "0 0 1 * *",
        "@yearly" | "@annually" => "0 0 1 1 *",
        _ => {
            return Err(format!(
                "cron: unknown macro {text:?} (expected @hourly, @daily, @weekly, @monthly or @yearly)"
            ));
        }
    })
}

/// One field: a comma list of `*`, values and ranges, each with an optional `/step`.
fn parse_field(field: &Field, text: &str) -> Result<u64, String> {
    let mut set = 0u64;
    for item in text.split(',') {
        set |= parse_item(field, item)?;
    }
    Ok(set)
}

/// One list item of a field: `*`, `N`, `N-M`, each optionally `/step` (`N/step` runs to the
/// field's maximum).
fn parse_item(field: &Field, item: &str) -> Result<u64, String> {
    let name = field.name;
    let (range, step) = match item.split_once('/') {
        Some((range, step)) => (range, Some(step)),
        None => (item, None),
    };
    let (low, high) = if range == "*" {
        (field.min, field.max)
    } else if let Some((a, b)) = range.split_once('-') {
        (value(field, a)?, value(field, b)?)
    } else {
        let v = value(field, range)?;
        (v, if step.is_some() { field.max } else { v })
    };
    if low > high {
        return Err(format!(
            "{name}: range {range} goes backwards (expected low-high)"
        ));
    }
    let step = match step {
        None => 1,
        Some(s) => match s.parse::<u8>() {
            Ok(n) if n >= 1 => n,
            _ => {
                return Err(format!(
                    "{name}: expected a step of 1 or more after '/', got {s:?}"
                ));
            }
        },
    };
    Ok((low..=high)
        .step_by(step as usize)
        .fold(0, |set, v| set | (1 << v)))
}

/// One value of a field: a number within its bounds or one of its names.
fn value(field: &Field, text: &str) -> Result<u8, String> {
    let (name, min, max) = (field.name, field.min, field.max);
    if let Some(i) = field
        .names
        .iter()
        .position(|n| n.eq_ignore_ascii_case(text))
    {
        return Ok(field.names_from + i as u8);
    }
    let names = match field.names {
        [] => String::new(),
        all => format!(" or {}-{}", all[0], all[all.len() - 1]),
    };
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{name}: expected {min}-{max}{names}, got {text:?}"));
    }
    match text.parse::<u8>() {
        Ok(v) if (min..=max).contains(&v) => Ok(v),
        _ => Err(format!("{name}: expected {min}-{max}{names}, got {text}")),
    }
}
