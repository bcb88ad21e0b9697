//! Pure time types for scheduled rollouts and deploy windows: time zones, one-shot times,
//! the local-time formatting of instants, and the one DST rule every part shares.
//!
//! No I/O beyond jiff's time zone database, no async, no clock: every function takes the
//! instant it reasons about ("now", "after") as Unix milliseconds.
//!
//! The DST rule, used by `parse_at`, `Cron` and `Window` alike: a local wall time that does
//! not exist (skipped by a spring-forward change) means the first instant after the gap, the
//! transition itself (02:30 -> 03:00 local); a wall time that happens twice (fall back)
//! means its first occurrence.

mod cron;
mod window;

#[cfg(test)]
mod tests;

pub use cron::Cron;
pub use window::Window;

use jiff::Timestamp;
use jiff::civil::DateTime;
use jiff::tz::{AmbiguousOffset, TimeZone};

/// A time zone by IANA name ("Europe/Amsterdam", "UTC").
pub fn check_tz(name: &str) -> Result<(), String> {
    zone(name).map(|_| ())
}

/// The zone named `name`, or an error that names it.
pub(crate) fn zone(name: &str) -> Result<TimeZone, String> {
    if name.is_empty() {
        return Err("time zone: expected an IANA name like Europe/Amsterdam, got nothing".into());
    }
    TimeZone::get(name).map_err(|_| {
        format!(
            "time zone: unknown zone {name:?} (expected an IANA name like Europe/Amsterdam or UTC)"
        )
    })
}

/// A one-shot time: "2026-12-01T02:00" (or with ":SS"; a space may stand for the `T`),
/// local wall time in `tz`, -> Unix ms. A wall time skipped by a DST change means the first
/// instant after the gap; one that happens twice means the first.
pub fn parse_at(text: &str, tz: &str) -> Result<u64, String> {
    let zone = zone(tz)?;
    let wall = parse_wall(text.trim()).ok_or_else(|| {
        format!(
            "time: expected a local time like 2026-12-01T02:00 or 2026-12-01T02:00:30, got {text:?}"
        )
    })?;
    let at = first_instant(&zone, wall)
        .ok_or_else(|| format!("time: {text:?} cannot be placed in {tz}"))?;
    to_ms(at).ok_or_else(|| format!("time: {text:?} is before 1970"))
}

/// "YYYY-MM-DDTHH:MM[:SS]" as a civil date-time, strictly (no offsets, no fractions).
fn parse_wall(text: &str) -> Option<DateTime> {
    let (date, time) = text.split_once(['T', ' '])?;
    let mut d = date.split('-');
    let (y, mo, day) = (d.next()?, d.next()?, d.next()?);
    if d.next().is_some() || y.len() != 4 || mo.len() != 2 || day.len() != 2 {
        return None;
    }
    let mut t = time.split(':');
    let (h, mi, s) = (t.next()?, t.next()?, t.next().unwrap_or("00"));
    if t.next().is_some() || h.len() != 2 || mi.len() != 2 || s.len() != 2 {
        return None;
    }
    DateTime::new(
        digits(y)? as i16,
        digits(mo)? as i8,
        digits(day)? as i8,
        digits(h)? as i8,
        digits(mi)? as i8,
        digits(s)? as i8,
        0,
    )
    .ok()
}

/// A run of ASCII digits (at most 4) as a number.
fn digits(text: &str) -> Option<u16> {
    if text.is_empty() || text.len() > 4 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// Formats Unix ms as local time in `tz`: "2026-12-01 02:00 CET". An unknown zone formats
/// in UTC (the zone is checked where it is configured; a message should still say something).
pub fn format_local(ms: u64, tz: &str) -> String {
    let Some(at) = from_ms(ms) else {
        return format!("{ms} ms since 1970");
    };
    let zone = zone(tz).unwrap_or(TimeZone::UTC);
    let wall = zone.to_datetime(at);
    let info = zone.to_offset_info(at);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02} {}",
        wall.year(),
        wall.month(),
        wall.day(),
        wall.hour(),
        wall.minute(),
        info.abbreviation()
    )
}

/// Unix ms as a timestamp (`None` past jiff's range, year 9999).
pub(crate) fn from_ms(ms: u64) -> Option<Timestamp> {
    Timestamp::from_millisecond(i64::try_from(ms).ok()?).ok()
}

/// A timestamp as Unix ms (`None` before 1970).
pub(crate) fn to_ms(at: Timestamp) -> Option<u64> {
    u64::try_from(at.as_millisecond()).ok()
}

/// The instant a local wall time means, by the module's DST rule: in a gap the transition
/// (the first instant after it), in a fold the first occurrence.
pub(crate) fn first_instant(zone: &TimeZone, wall: DateTime) -> Option<Timestamp> {
    occurrences(zone, wall).first().copied()
}

/// Every instant at which the local clock in `zone` reads `wall`, in order: one, two in a
/// fold, and for a wall time in a gap the transition that skipped it.
pub(crate) fn occurrences(zone: &TimeZone, wall: DateTime) -> Vec<Timestamp> {
    match zone.to_ambiguous_timestamp(wall).offset() {
        AmbiguousOffset::Unambiguous { offset } => {
            offset.to_timestamp(wall).ok().into_iter().collect()
        }
        AmbiguousOffset::Fold { before, after } => [before, after]
            .into_iter()
            .filter_map(|offset| offset.to_timestamp(wall).ok())
            .collect(),
        AmbiguousOffset::Gap { after, .. } => {
            // `wall` read with the later offset is an instant just before the transition.
            let Ok(early) = after.to_timestamp(wall) else {
                return Vec::new();
            };
            zone.following(early)
                .next()
                .map(|t| t.timestamp())
                .into_iter()
                .collect()
        }
    }
}
