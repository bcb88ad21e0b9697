//! Tests of `schedule`: cron parsing and errors, `next_after`, `parse_at`, `Window` and
//! `format_local`, with DST in both directions in Europe/Amsterdam and America/New_York.

use super::*;

const AMS: &str = "Europe/Amsterdam";
const NYC: &str = "America/New_York";

/// An RFC 3339 UTC instant as Unix ms.
fn utc(text: &str) -> u64 {
    let at: jiff::Timestamp = text.parse().expect("test instant");
    to_ms(at).expect("after 1970")
}

fn cron(expr: &str, tz: &str) -> Cron {
    Cron::parse(expr, tz).expect("valid cron")
}

/// Every fire time in (from, until], checking each call moves strictly forward.
fn fires(c: &Cron, from: &str, until: &str) -> Vec<u64> {
    let (mut t, end) = (utc(from), utc(until));
    let mut out = Vec::new();
    while let Some(next) = c.next_after(t) {
        assert!(next > t, "{} after {t} gave {next}", c.expr());
        if next > end {
            break;
        }
        out.push(next);
        t = next;
    }
    out
}

#[test]
fn cron_errors_name_the_field_and_what_was_expected() {
    let err = |expr: &str| Cron::parse(expr, "UTC").unwrap_err();
    assert_eq!(err("61 * * * *"), "minute: expected 0-59, got 61");
    assert_eq!(err("0 24 * * *"), "hour: expected 0-23, got 24");
    assert_eq!(err("0 0 0 * *"), "day-of-month: expected 1-31, got 0");
    assert_eq!(err("0 0 * 13 *"), "month: expected 1-12 or JAN-DEC, got 13");
    assert_eq!(
        err("0 0 * * FOO"),
        "day-of-week: expected 0-7 or SUN-SAT, got \"FOO\""
    );
    assert_eq!(err("x * * * *"), "minute: expected 0-59, got \"x\"");
    assert_eq!(
        err("30-10 * * * *"),
        "minute: range 30-10 goes backwards (expected low-high)"
    );
    assert_eq!(
        err("*/0 * * * *"),
        "minute: expected a step of 1 or more after '/', got \"0\""
    );
    assert_eq!(err("1,,2 * * * *"), "minute: expected 0-59, got \"\"");
    assert!(
        err("* * * *").starts_with("cron: expected 5 fields"),
        "{}",
        err("* * * *")
    );
    assert!(err("@often").contains("unknown macro"));
    let zone = Cron::parse("* * * * *", "Mars/Olympus").unwrap_err();
    assert!(zone.contains("unknown zone \"Mars/Olympus\""), "{zone}");
}

#[test]
fn cron_keeps_its_text_and_zone() {
    let c = cron("  */15 9-17 * * mon-fri ", AMS);
    assert_eq!((c.expr(), c.tz()), ("*/15 9-17 * * mon-fri", AMS));
    assert_eq!(cron("@daily", "UTC"), cron("@daily", "UTC"));
}

#[test]
fn every_minute_and_every_quarter_hour() {
    let every = cron("* * * * *", "UTC");
    assert_eq!(
        every.next_after(utc("2026-11-26T10:00:00Z")),
        Some(utc("2026-11-26T10:01:00Z"))
    );
    assert_eq!(
        every.next_after(utc("2026-11-26T10:00:59.999Z")),
        Some(utc("2026-11-26T10:01:00Z"))
    );
    let quarter = cron("*/15 * * * *", "UTC");
    let got = fires(&quarter, "2026-11-26T10:07:00Z", "2026-11-26T11:00:00Z");
    let want = ["10:15", "10:30", "10:45", "11:00"].map(|t| utc(&format!("2026-11-26T{t}:00Z")));
    assert_eq!(got, want);
}

#[test]
fn weekday_ranges_and_month_names() {
    // 2026-11-27 is a Friday.
    let weekdays = cron("0 9 * * MON-FRI", AMS);
    assert_eq!(
        weekdays.next_after(utc("2026-11-27T10:00:00Z")),
        Some(utc("2026-11-30T08:00:00Z"))
    );
    let sunday = cron("0 12 * * 7", "UTC");
    assert_eq!(
        sunday.next_after(utc("2026-11-27T00:00:00Z")),
        Some(utc("2026-11-29T12:00:00Z"))
    );
    let months = cron("0 0 1 jan,JUL *", "UTC");
    assert_eq!(
        months.next_after(utc("2026-02-01T00:00:00Z")),
        Some(utc("2026-07-01T00:00:00Z"))
    );
    assert_eq!(
        months.next_after(utc("2026-07-01T00:00:00Z")),
        Some(utc("2027-01-01T00:00:00Z"))
    );
    let stepped = cron("0 0 5/10 * *", "UTC");
    assert_eq!(
        stepped.next_after(utc("2026-11-16T00:00:00Z")),
        Some(utc("2026-11-25T00:00:00Z"))
    );
}

#[test]
fn day_of_month_and_day_of_week_are_or_ed_when_both_are_restricted() {
    // From Monday 2026-11-09: Friday the 13th is 4 days on, but Friday the 13th or any
    // Friday fires on Friday the 13th; the 13th or Wednesday fires on Wednesday 11th.
    let or = cron("0 0 13 * WED", "UTC");
    assert_eq!(
        or.next_after(utc("2026-11-09T00:00:00Z")),
        Some(utc("2026-11-11T00:00:00Z"))
    );
    assert_eq!(
        or.next_after(utc("2026-11-11T00:00:00Z")),
        Some(utc("2026-11-13T00:00:00Z"))
    );
    // With `*` in day-of-week only the day of the month counts, and with a `*`-step there
    // both must match (Vixie: a field starting with `*` is not "restricted").
    let star = cron("0 0 13 * *", "UTC");
    assert_eq!(
        star.next_after(utc("2026-11-09T00:00:00Z")),
        Some(utc("2026-11-13T00:00:00Z"))
    );
    let and = cron("0 0 13 * */7", "UTC"); // Sundays only, and the 13th
    assert_eq!(
        and.next_after(utc("2026-11-09T00:00:00Z")),
        Some(utc("2026-12-13T00:00:00Z"))
    );
    assert_eq!(cron("0 0 31 2 *", "UTC").next_after(0), None);
    assert_eq!(
        cron("0 0 29 2 *", "UTC").next_after(utc("2026-01-01T00:00:00Z")),
        Some(utc("2028-02-29T00:00:00Z"))
    );
}

#[test]
fn daily_0230_fires_once_on_both_dst_days_in_amsterdam() {
    let c = cron("30 2 * * *", AMS);
    // Spring forward 2026-03-29 02:00 CET -> 03:00 CEST: 02:30 does not exist, so 03:00 CEST.
    let spring = fires(&c, "2026-03-27T23:00:00Z", "2026-03-30T22:00:00Z");
    let want = [
        "2026-03-28T01:30:00Z",
        "2026-03-29T01:00:00Z",
        "2026-03-30T00:30:00Z",
    ];
    assert_eq!(spring, want.map(utc));
    assert_eq!(format_local(spring[1], AMS), "2026-03-29 03:00 CEST");
    // Fall back 2026-10-25 03:00 CEST -> 02:00 CET: 02:30 happens twice, runs at the first.
    let fall = fires(&c, "2026-10-23T22:00:00Z", "2026-10-26T22:00:00Z");
    let want = [
        "2026-10-24T00:30:00Z",
        "2026-10-25T00:30:00Z",
        "2026-10-26T01:30:00Z",
    ];
    assert_eq!(fall, want.map(utc));
    assert_eq!(format_local(fall[1], AMS), "2026-10-25 02:30 CEST");
}

#[test]
fn daily_jobs_fire_once_on_both_dst_days_in_new_york() {
    // Spring forward 2026-03-08 02:00 EST -> 03:00 EDT.
    let c = cron("30 2 * * *", NYC);
    let spring = fires(&c, "2026-03-07T05:00:00Z", "2026-03-09T05:00:00Z");
    assert_eq!(
        spring,
        ["2026-03-07T07:30:00Z", "2026-03-08T07:00:00Z"].map(utc)
    );
    assert_eq!(format_local(spring[1], NYC), "2026-03-08 03:00 EDT");
    // Fall back 2026-11-01 02:00 EDT -> 01:00 EST: 02:30 once; 01:30 (repeated) at the first.
    let fall = fires(&c, "2026-11-01T04:00:00Z", "2026-11-02T04:00:00Z");
    assert_eq!(fall, [utc("2026-11-01T07:30:00Z")]);
    let repeated = fires(
        &cron("30 1 * * *", NYC),
        "2026-11-01T04:00:00Z",
        "2026-11-02T04:00:00Z",
    );
    assert_eq!(repeated, [utc("2026-11-01T05:30:00Z")]);
    assert_eq!(format_local(repeated[0], NYC), "2026-11-01 01:30 EDT");
}

#[test]
fn hourly_has_no_duplicate_and_no_gap_beyond_the_skipped_hour() {
    for (tz, spring, fall) in [
        (AMS, "2026-03-29T01:00:00Z", "2026-10-25T01:00:00Z"),
        (NYC, "2026-03-08T07:00:00Z", "2026-11-01T06:00:00Z"),
    ] {
        let c = cron("0 * * * *", tz);
        let hour = 3_600_000;
        // Spring forward: the skipped hour's slot is the transition itself; every real hour fires.
        let got = fires(&c, &around(spring, -6), &around(spring, 6));
        assert!(got.windows(2).all(|w| w[1] - w[0] == hour), "{tz}: {got:?}");
        assert_eq!(got.len(), 12, "{tz}");
        // Fall back: the repeated hour's slot runs once, so one real-time gap of two hours.
        let got = fires(&c, &around(fall, -6), &around(fall, 6));
        let gaps: Vec<u64> = got.windows(2).map(|w| w[1] - w[0]).collect();
        assert_eq!(
            gaps.iter().filter(|&&g| g == 2 * hour).count(),
            1,
            "{tz}: {got:?}"
        );
        assert!(
            gaps.iter().all(|&g| g == hour || g == 2 * hour),
            "{tz}: {got:?}"
        );
    }
}

/// An instant `hours` hours from the RFC 3339 `at`, as RFC 3339.
fn around(at: &str, hours: i64) -> String {
    let at: jiff::Timestamp = at.parse().expect("test instant");
    at.checked_add(jiff::SignedDuration::from_hours(hours))
        .expect("in range")
        .to_string()
}

#[test]
fn every_minute_across_dst_changes_is_strictly_increasing() {
    let c = cron("* * * * *", AMS);
    // Fall back: the first pass of the repeated hour fires every minute, the second not at all.
    let fall = fires(&c, "2026-10-24T23:30:00Z", "2026-10-25T02:30:00Z");
    assert!(fall.windows(2).all(|w| w[0] < w[1]));
    let minute = 60_000;
    let long: Vec<&[u64]> = fall.windows(2).filter(|w| w[1] - w[0] != minute).collect();
    assert_eq!(
        long,
        [&[utc("2026-10-25T00:59:00Z"), utc("2026-10-25T02:00:00Z")][..]]
    );
    // Spring forward: 01:59 CET, then the skipped hour once at 03:00 CEST, then 03:01.
    let spring = fires(&c, "2026-03-29T00:58:00Z", "2026-03-29T01:02:00Z");
    let want = ["00:59", "01:00", "01:01", "01:02"].map(|t| utc(&format!("2026-03-29T{t}:00Z")));
    assert_eq!(spring, want);
}

#[test]
fn parse_at_in_a_gap_an_overlap_and_plain_time() {
    assert_eq!(
        parse_at("2026-12-01T02:00", AMS),
        Ok(utc("2026-12-01T01:00:00Z"))
    );
    assert_eq!(
        parse_at("2026-12-01 02:00:30", "UTC"),
        Ok(utc("2026-12-01T02:00:30Z"))
    );
    assert_eq!(
        parse_at("2026-03-29T02:30", AMS),
        Ok(utc("2026-03-29T01:00:00Z"))
    );
    assert_eq!(
        parse_at("2026-10-25T02:30", AMS),
        Ok(utc("2026-10-25T00:30:00Z"))
    );
    assert_eq!(
        parse_at("2026-03-08T02:30", NYC),
        Ok(utc("2026-03-08T07:00:00Z"))
    );
    assert_eq!(
        parse_at("2026-11-01T01:30", NYC),
        Ok(utc("2026-11-01T05:30:00Z"))
    );
    for bad in [
        "2026-02-30T01:00",
        "2026-12-01",
        "2026-12-01T2:00",
        "2026-12-01T02:00Z",
        "tomorrow",
        "",
    ] {
        let err = parse_at(bad, AMS).unwrap_err();
        assert!(
            err.starts_with("time: expected a local time like"),
            "{bad}: {err}"
        );
    }
    assert!(
        parse_at("1969-12-31T23:00", "UTC")
            .unwrap_err()
            .contains("before 1970")
    );
    assert!(
        parse_at("2026-12-01T02:00", "Nowhere/City")
            .unwrap_err()
            .contains("unknown zone")
    );
}

#[test]
fn check_tz_and_format_local() {
    assert_eq!(check_tz(AMS), Ok(()));
    assert_eq!(check_tz("UTC"), Ok(()));
    assert!(
        check_tz("Europe/Amsterdamm")
            .unwrap_err()
            .contains("\"Europe/Amsterdamm\"")
    );
    assert!(check_tz("").is_err());
    assert_eq!(
        format_local(utc("2026-12-01T01:00:00Z"), AMS),
        "2026-12-01 02:00 CET"
    );
    assert_eq!(
        format_local(utc("2026-07-01T01:00:00Z"), AMS),
        "2026-07-01 03:00 CEST"
    );
    assert_eq!(
        format_local(utc("2026-12-01T01:00:00Z"), NYC),
        "2026-11-30 20:00 EST"
    );
    assert_eq!(
        format_local(utc("2026-12-01T01:00:00Z"), "UTC"),
        "2026-12-01 01:00 UTC"
    );
    assert_eq!(
        format_local(u64::MAX, "UTC"),
        format!("{} ms since 1970", u64::MAX)
    );
}

#[test]
fn window_parses_and_prints_canonically() {
    let text = |t: &str| Window::parse(t).map(|w| w.to_string());
    assert_eq!(
        text("Mon-Fri 09:00-16:00 Europe/Amsterdam").as_deref(),
        Ok("Mon-Fri 09:00-16:00 Europe/Amsterdam")
    );
    assert_eq!(
        text("monday,TUE,Wednesday,thu,fri 09:00-16:00 UTC").as_deref(),
        Ok("Mon-Fri 09:00-16:00 UTC")
    );
    assert_eq!(
        text("Mon-Sun 00:00-24:00 UTC").as_deref(),
        Ok("daily 00:00-24:00 UTC")
    );
    assert_eq!(
        text("Fri-Mon 22:00-23:30 UTC").as_deref(),
        Ok("Fri-Mon 22:00-23:30 UTC")
    );
    assert_eq!(
        text("Wed,Mon,Fri 08:00-09:00 UTC").as_deref(),
        Ok("Mon,Wed,Fri 08:00-09:00 UTC")
    );
    assert_eq!(
        text("Sun 08:00-09:00 UTC").as_deref(),
        Ok("Sun 08:00-09:00 UTC")
    );
    let w = Window::parse("Sat,Sun 10:00-12:00 UTC").expect("valid");
    assert_eq!(Window::parse(&w.to_string()), Ok(w));
    let err = |t: &str| Window::parse(t).unwrap_err();
    assert!(err("Mon-Fri 09:00-16:00").starts_with("window: expected DAYS HH:MM-HH:MM ZONE"));
    assert!(err("Mon-Fry 09:00-16:00 UTC").contains("\"Fry\""));
    assert_eq!(
        err("Mon 16:00-09:00 UTC"),
        "window: the end 09:00 must be after the start 16:00"
    );
    assert_eq!(
        err("Mon 09:00-09:00 UTC"),
        "window: the end 09:00 must be after the start 09:00"
    );
    assert!(err("Mon 24:00-24:00 UTC").contains("got \"24:00\""));
    assert!(err("Mon 9:00-16:00 UTC").contains("got \"9:00\""));
    assert!(err("Mon 09:00-16:60 UTC").contains("got \"16:60\""));
    assert!(err("Mon 09:00 UTC").contains("HH:MM-HH:MM"));
    assert!(err("Mon 09:00-16:00 Mars/Base").contains("unknown zone \"Mars/Base\""));
}

#[test]
fn window_across_a_weekend() {
    let w = Window::parse("Mon-Fri 09:00-16:00 Europe/Amsterdam").expect("valid");
    // Friday 2026-11-27, CET (UTC+1).
    let friday_three = utc("2026-11-27T14:00:00Z");
    assert!(w.contains(friday_three));
    assert_eq!(w.next_open(friday_three), friday_three);
    assert_eq!(w.closes_after(friday_three), utc("2026-11-27T15:00:00Z"));
    assert!(!w.contains(utc("2026-11-27T15:00:00Z")), "end is exclusive");
    assert!(
        w.contains(utc("2026-11-27T08:00:00Z")),
        "start is inclusive"
    );
    let saturday = utc("2026-11-28T11:00:00Z");
    assert!(!w.contains(saturday));
    assert_eq!(w.next_open(saturday), utc("2026-11-30T08:00:00Z"));
    assert_eq!(
        w.next_open(utc("2026-11-27T15:00:00Z")),
        utc("2026-11-30T08:00:00Z")
    );
    assert_eq!(
        w.closes_after(saturday),
        saturday,
        "closed: nothing to close"
    );
    // Friday before the spring-forward Sunday: Monday opens at 09:00 CEST (UTC+2).
    assert_eq!(
        w.next_open(utc("2026-03-27T15:00:00Z")),
        utc("2026-03-30T07:00:00Z")
    );
    let always = Window::parse("daily 00:00-24:00 UTC").expect("valid");
    assert_eq!(always.closes_after(saturday), u64::MAX);
    let weekdays = Window::parse("Mon-Fri 00:00-24:00 UTC").expect("valid");
    assert_eq!(
        weekdays.closes_after(friday_three),
        utc("2026-11-28T00:00:00Z")
    );
    assert_eq!(weekdays.next_open(saturday), utc("2026-11-30T00:00:00Z"));
}

#[test]
fn window_across_dst_changes() {
    // Spring forward: a window that straddles the gap closes at 04:00 CEST.
    let night = Window::parse("daily 01:00-04:00 Europe/Amsterdam").expect("valid");
    assert!(night.contains(utc("2026-03-29T00:30:00Z")));
    assert_eq!(
        night.closes_after(utc("2026-03-29T00:30:00Z")),
        utc("2026-03-29T02:00:00Z")
    );
    // One that starts inside the gap opens when the gap ends (03:00 CEST).
    let late = Window::parse("Sun 02:30-04:00 Europe/Amsterdam").expect("valid");
    assert_eq!(
        late.next_open(utc("2026-03-28T12:00:00Z")),
        utc("2026-03-29T01:00:00Z")
    );
    // One wholly inside the gap does not open that day: the next Sunday, in CEST.
    let lost = Window::parse("Sun 02:00-02:30 Europe/Amsterdam").expect("valid");
    assert_eq!(
        lost.next_open(utc("2026-03-28T12:00:00Z")),
        utc("2026-04-05T00:00:00Z")
    );
    // Fall back: 02:00-02:30 happens twice; open both times, closed in between.
    let first = utc("2026-10-25T00:00:00Z");
    assert_eq!(lost.next_open(utc("2026-10-24T12:00:00Z")), first);
    assert_eq!(lost.closes_after(first), utc("2026-10-25T00:30:00Z"));
    assert!(!lost.contains(utc("2026-10-25T00:45:00Z")));
    assert_eq!(
        lost.next_open(utc("2026-10-25T00:45:00Z")),
        utc("2026-10-25T01:00:00Z")
    );
    assert_eq!(
        lost.closes_after(utc("2026-10-25T01:10:00Z")),
        utc("2026-10-25T01:30:00Z")
    );
    // New York: a weekday window after the fall-back weekend opens at 09:00 EST (UTC-5).
    let ny = Window::parse("Mon-Fri 09:00-17:00 America/New_York").expect("valid");
    assert_eq!(
        ny.next_open(utc("2026-10-30T22:00:00Z")),
        utc("2026-11-02T14:00:00Z")
    );
}
