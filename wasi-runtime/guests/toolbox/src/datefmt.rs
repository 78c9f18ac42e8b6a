//! Calendar arithmetic (UTC only), strftime-style formatting, a small date parser, and `date`.

use crate::util::*;

pub const DAYS: [&str; 7] = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"];
pub const MONTHS: [&str; 12] = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"];

/// Broken-down UTC time.
#[derive(Clone, Copy, Debug)]
pub struct Tm {
    pub year: i64,
    pub mon: u32, // 1..12
    pub day: u32, // 1..31
    pub hour: u32,
    pub min: u32,
    pub sec: u32,
    pub wday: u32, // 0 = Sunday
    pub yday: u32, // 0-based
    pub nsec: u32,
    pub epoch: i64,
}

pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719468;
    let era = if z >= 0 { z } else { z - 146096 } / 146097;
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

pub fn tm_from_epoch(t: i64, nsec: u32) -> Tm {
    let days = t.div_euclid(86400);
    let secs = t.rem_euclid(86400) as u32;
    let (year, mon, day) = civil_from_days(days);
    let wday = (days + 4).rem_euclid(7) as u32;
    let yday = (days - days_from_civil(year, 1, 1)) as u32;
    Tm { year, mon, day, hour: secs / 3600, min: secs / 60 % 60, sec: secs % 60, wday, yday, nsec, epoch: t }
}

fn iso_week(tm: &Tm) -> (i64, u32) {
    // ISO 8601 week number and week-based year
    let wday = (tm.wday + 6) % 7; // Monday=0
    let yday = tm.yday as i64;
    let mut year = tm.year;
    let mut week = (yday - wday as i64 + 10) / 7;
    if week < 1 {
        year -= 1;
        let py_days = if is_leap(year) { 366 } else { 365 };
        week = (yday + py_days - wday as i64 + 10) / 7;
    } else {
        let ydays = if is_leap(year) { 366 } else { 365 };
        if week == 53 && (ydays - yday) <= (3 - wday as i64) {
            // belongs to week 1 of next year
            year += 1;
            week = 1;
        }
    }
    (year, week as u32)
}

/// Format like strftime in the C locale, time zone UTC.
pub fn strftime(fmt: &str, tm: &Tm) -> String {
    let mut o = String::new();
    let cs: Vec<char> = fmt.chars().collect();
    let mut i = 0;
    while i < cs.len() {
        let c = cs[i];
        i += 1;
        if c != '%' || i >= cs.len() {
            o.push(c);
            continue;
        }
        let start = i - 1;
        // flags
        let mut pad: Option<char> = None; // '-', '_', '0'
        let mut upper = false;
        let mut swap = false;
        while i < cs.len() && "-_0^#".contains(cs[i]) {
            match cs[i] {
                '^' => upper = true,
                '#' => swap = true,
                f => pad = Some(f),
            }
            i += 1;
        }
        let mut width: Option<usize> = None;
        while i < cs.len() && cs[i].is_ascii_digit() {
            width = Some(width.unwrap_or(0) * 10 + cs[i].to_digit(10).unwrap() as usize);
            i += 1;
        }
        let mut colons = 0;
        while i < cs.len() && cs[i] == ':' {
            colons += 1;
            i += 1;
        }
        if i >= cs.len() {
            o.extend(cs[start..].iter());
            break;
        }
        let conv = cs[i];
        i += 1;
        // (text, is_numeric, default width, default pad char)
        let num = |v: i64, w: usize, p: char| (format!("{}", v), true, w, p);
        let txt = |s: String| (s, false, 0usize, ' ');
        let (s, numeric, dw, dp) = match conv {
            'a' => txt(DAYS[tm.wday as usize][..3].to_string()),
            'A' => txt(DAYS[tm.wday as usize].to_string()),
            'b' | 'h' => txt(MONTHS[tm.mon as usize - 1][..3].to_string()),
            'B' => txt(MONTHS[tm.mon as usize - 1].to_string()),
            'c' => txt(strftime("%a %b %e %H:%M:%S %Y", tm)),
            'C' => num(tm.year.div_euclid(100), 2, '0'),
            'd' => num(tm.day as i64, 2, '0'),
            'D' => txt(strftime("%m/%d/%y", tm)),
            'e' => num(tm.day as i64, 2, ' '),
            'F' => txt(strftime("%Y-%m-%d", tm)),
            'g' => num(iso_week(tm).0.rem_euclid(100), 2, '0'),
            'G' => num(iso_week(tm).0, 1, '0'),
            'H' => num(tm.hour as i64, 2, '0'),
            'I' => num(((tm.hour + 11) % 12 + 1) as i64, 2, '0'),
            'j' => num(tm.yday as i64 + 1, 3, '0'),
            'k' => num(tm.hour as i64, 2, ' '),
            'l' => num(((tm.hour + 11) % 12 + 1) as i64, 2, ' '),
            'm' => num(tm.mon as i64, 2, '0'),
            'M' => num(tm.min as i64, 2, '0'),
            'n' => txt("\n".into()),
            'N' => {
                let w = width.unwrap_or(9).max(1).min(9);
                let s = format!("{:09}", tm.nsec);
                width = None;
                (s[..w].to_string(), false, 0, ' ')
            }
            'p' => txt(if tm.hour < 12 { "AM" } else { "PM" }.into()),
            'P' => txt(if tm.hour < 12 { "am" } else { "pm" }.into()),
            'r' => txt(strftime("%I:%M:%S %p", tm)),
            'R' => txt(strftime("%H:%M", tm)),
            's' => num(tm.epoch, 1, '0'),
            'S' => num(tm.sec as i64, 2, '0'),
            't' => txt("\t".into()),
            'T' => txt(strftime("%H:%M:%S", tm)),
            'u' => num(((tm.wday + 6) % 7 + 1) as i64, 1, '0'),
            'U' => num(((tm.yday + 7 - tm.wday) / 7) as i64, 2, '0'),
            'V' => num(iso_week(tm).1 as i64, 2, '0'),
            'w' => num(tm.wday as i64, 1, '0'),
            'W' => num(((tm.yday + 7 - (tm.wday + 6) % 7) / 7) as i64, 2, '0'),
            'x' => txt(strftime("%m/%d/%y", tm)),
            'X' => txt(strftime("%H:%M:%S", tm)),
            'y' => num(tm.year.rem_euclid(100), 2, '0'),
            'Y' => num(tm.year, 1, '0'),
            'z' => txt(match colons {
                0 => "+0000".into(),
                1 => "+00:00".into(),
                2 => "+00:00:00".into(),
                _ => "+00".into(),
            }),
            'Z' => txt(if swap { "utc".into() } else { "UTC".into() }),
            '%' => txt("%".into()),
            _ => {
                o.extend(cs[start..i].iter());
                continue;
            }
        };
        let mut s = s;
        if upper {
            s = s.to_uppercase();
        } else if swap && conv != 'Z' {
            s = if s.chars().any(|c| c.is_lowercase()) { s.to_uppercase() } else { s.to_lowercase() };
        }
        let w = width.unwrap_or(if pad == Some('-') { 0 } else { dw });
        let pc = match pad {
            Some('_') => ' ',
            Some('0') => '0',
            Some('-') => {
                if numeric {
                    // strip default padding entirely
                    o.push_str(&s);
                    continue;
                }
                ' '
            }
            _ => {
                if numeric {
                    dp
                } else {
                    ' '
                }
            }
        };
        if s.chars().count() < w {
            let n = w - s.chars().count();
            if numeric && pc == '0' && s.starts_with('-') {
                o.push('-');
                o.push_str(&"0".repeat(n));
                o.push_str(&s[1..]);
            } else {
                o.push_str(&pc.to_string().repeat(n));
                o.push_str(&s);
            }
        } else {
            o.push_str(&s);
        }
    }
    o
}

// ---------------------------------------------------------------- parsing

fn month_index(w: &str) -> Option<u32> {
    let w = w.to_ascii_lowercase();
    if w.len() < 3 {
        return None;
    }
    for (i, m) in MONTHS.iter().enumerate() {
        let ml = m.to_ascii_lowercase();
        if ml.starts_with(&w) || (w.len() >= 3 && ml[..3] == w[..3] && (w.len() == 3 || (w.len() == 4 && w.ends_with('.')))) {
            return Some(i as u32 + 1);
        }
    }
    None
}

/// Parse a date string (a practical subset of GNU `date -d`), relative to `now`.
/// Returns (seconds, nanoseconds).
pub fn parse_date(s: &str, now: (i64, u32)) -> Option<(i64, u32)> {
    let s = s.trim();
    if let Some(r) = s.strip_prefix('@') {
        let r = r.trim();
        let (ip, fp) = match r.find('.') {
            Some(p) => (&r[..p], &r[p + 1..]),
            None => (r, ""),
        };
        let secs: i64 = ip.parse().ok()?;
        let mut ns = 0u32;
        if !fp.is_empty() {
            if !fp.chars().all(|c| c.is_ascii_digit()) {
                return None;
            }
            let f9: String = fp.chars().chain(std::iter::repeat('0')).take(9).collect();
            ns = f9.parse().ok()?;
        }
        return Some((secs, ns));
    }
    let ntm = tm_from_epoch(now.0, now.1);
    let mut date: Option<(i64, u32, u32)> = None;
    let mut time: Option<(u32, u32, u32, u32)> = None;
    let mut rel_secs: i64 = 0;
    let mut rel_days: i64 = 0;
    let mut rel_months: i64 = 0;
    let mut tz_off: i64 = 0;
    // tokenise: split on whitespace, and split "T" between date and time
    let norm = s.replace(',', " ");
    let mut toks: Vec<String> = Vec::new();
    for t in norm.split_whitespace() {
        if t.len() > 11 && t.as_bytes()[4] == b'-' && (t.as_bytes()[10] == b'T' || t.as_bytes()[10] == b't') {
            toks.push(t[..10].to_string());
            toks.push(t[11..].to_string());
        } else {
            toks.push(t.to_string());
        }
    }
    let mut i = 0;
    let mut pending_num: Option<i64> = None;
    while i < toks.len() {
        let t = toks[i].clone();
        let tl = t.to_ascii_lowercase();
        i += 1;
        // YYYY-MM-DD
        let parts: Vec<&str> = t.split('-').collect();
        if parts.len() == 3 && parts.iter().all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit())) {
            let y: i64 = parts[0].parse().ok()?;
            let m: u32 = parts[1].parse().ok()?;
            let d: u32 = parts[2].parse().ok()?;
            if !(1..=12).contains(&m) || d < 1 || d > 31 {
                return None;
            }
            date = Some((y, m, d));
            continue;
        }
        // MM/DD/YYYY
        let sl: Vec<&str> = t.split('/').collect();
        if sl.len() >= 2 && sl.len() <= 3 && sl.iter().all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit())) {
            let m: u32 = sl[0].parse().ok()?;
            let d: u32 = sl[1].parse().ok()?;
            let y: i64 = if sl.len() == 3 {
                let y: i64 = sl[2].parse().ok()?;
                if sl[2].len() <= 2 {
                    if y < 69 {
                        2000 + y
                    } else {
                        1900 + y
                    }
                } else {
                    y
                }
            } else {
                ntm.year
            };
            if !(1..=12).contains(&m) || d < 1 || d > 31 {
                return None;
            }
            date = Some((y, m, d));
            continue;
        }
        // time HH:MM[:SS[.frac]][Z|+hh:mm]
        if t.contains(':') && t.as_bytes()[0].is_ascii_digit() {
            let mut body = t.as_str();
            let mut off: Option<i64> = None;
            if body.ends_with('Z') || body.ends_with('z') {
                body = &body[..body.len() - 1];
                off = Some(0);
            } else if let Some(p) = body.rfind(|c| c == '+' || c == '-') {
                let z = &body[p + 1..];
                let zd: String = z.chars().filter(|c| *c != ':').collect();
                if zd.len() == 4 && zd.chars().all(|c| c.is_ascii_digit()) {
                    let v = zd[..2].parse::<i64>().ok()? * 3600 + zd[2..].parse::<i64>().ok()? * 60;
                    off = Some(if &body[p..p + 1] == "-" { -v } else { v });
                    body = &body[..p];
                }
            }
            let hp: Vec<&str> = body.split(':').collect();
            if hp.len() < 2 || hp.len() > 3 {
                return None;
            }
            let h: u32 = hp[0].parse().ok()?;
            let m: u32 = hp[1].parse().ok()?;
            let (sec, ns) = if hp.len() == 3 {
                let sp = hp[2];
                let (a, b) = match sp.find('.') {
                    Some(p) => (&sp[..p], &sp[p + 1..]),
                    None => (sp, ""),
                };
                let f9: String = b.chars().chain(std::iter::repeat('0')).take(9).collect();
                (a.parse::<u32>().ok()?, if b.is_empty() { 0 } else { f9.parse().ok()? })
            } else {
                (0, 0)
            };
            if h > 23 || m > 59 || sec > 60 {
                return None;
            }
            time = Some((h, m, sec, ns));
            if let Some(o) = off {
                tz_off = o;
            }
            continue;
        }
        if tl == "utc" || tl == "gmt" || tl == "z" || tl == "+0000" || tl == "-0000" {
            continue;
        }
        if (t.starts_with('+') || t.starts_with('-')) && t.len() == 5 && t[1..].chars().all(|c| c.is_ascii_digit()) && pending_num.is_none() && (date.is_some() || time.is_some()) {
            let v = t[1..3].parse::<i64>().ok()? * 3600 + t[3..].parse::<i64>().ok()? * 60;
            tz_off = if t.starts_with('-') { -v } else { v };
            continue;
        }
        match tl.as_str() {
            "now" => continue,
            "today" => continue,
            "yesterday" => {
                rel_days -= 1;
                continue;
            }
            "tomorrow" => {
                rel_days += 1;
                continue;
            }
            "ago" => {
                rel_secs = -rel_secs;
                rel_days = -rel_days;
                rel_months = -rel_months;
                continue;
            }
            "next" => {
                pending_num = Some(1);
                continue;
            }
            "last" => {
                pending_num = Some(-1);
                continue;
            }
            _ => {}
        }
        if let Ok(n) = t.trim_start_matches('+').parse::<i64>() {
            if pending_num.is_some() {
                return None;
            }
            // a bare number could be a year after a month name ("Nov 22 2026") or a day
            pending_num = Some(n);
            // lookahead: is the next token a unit?
            let next_is_unit = toks.get(i).map(|u| unit_secs(&u.to_ascii_lowercase()).is_some()).unwrap_or(false);
            if !next_is_unit {
                // day-of-month / year in "Nov 22 2026" style
                if let Some((y, m, d)) = date {
                    if n > 31 {
                        date = Some((n, m, d));
                    } else {
                        date = Some((y, m, n as u32));
                    }
                    pending_num = None;
                    continue;
                }
                return None;
            }
            continue;
        }
        if let Some(m) = month_index(&tl) {
            date = Some((date.map(|d| d.0).unwrap_or(ntm.year), m, 1));
            continue;
        }
        if DAYS.iter().any(|d| d.to_ascii_lowercase().starts_with(&tl) && tl.len() >= 3) {
            continue; // weekday names are ignored when a date is given
        }
        if let Some(u) = unit_secs(&tl) {
            let n = pending_num.take().unwrap_or(1);
            match u {
                Unit::Secs(k) => rel_secs += n * k,
                Unit::Days(k) => rel_days += n * k,
                Unit::Months(k) => rel_months += n * k,
            }
            continue;
        }
        return None;
    }
    if pending_num.is_some() {
        return None;
    }
    let (mut y, mut m, mut d) = match date {
        Some(x) => x,
        None => (ntm.year, ntm.mon, ntm.day),
    };
    let (h, mi, s, ns) = match time {
        Some(t) => t,
        None => {
            if date.is_some() || toks.iter().any(|t| {
                let t = t.to_ascii_lowercase();
                t == "today" || t == "yesterday" || t == "tomorrow"
            }) && date.is_some()
            {
                (0, 0, 0, 0)
            } else {
                (ntm.hour, ntm.min, ntm.sec, ntm.nsec)
            }
        }
    };
    if rel_months != 0 {
        let total = y * 12 + (m as i64 - 1) + rel_months;
        y = total.div_euclid(12);
        m = (total.rem_euclid(12) + 1) as u32;
    }
    let mdays = [31, if is_leap(y) { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    if date.is_some() && d > mdays[m as usize - 1] && rel_months == 0 {
        return None;
    }
    if d > mdays[m as usize - 1] {
        // GNU normalises overflow into the next month
        let extra = d - mdays[m as usize - 1];
        d = mdays[m as usize - 1];
        rel_days += extra as i64;
    }
    let days = days_from_civil(y, m, d) + rel_days;
    let secs = days * 86400 + (h * 3600 + mi * 60 + s) as i64 - tz_off + rel_secs;
    Some((secs, ns))
}

enum Unit {
    Secs(i64),
    Days(i64),
    Months(i64),
}

fn unit_secs(u: &str) -> Option<Unit> {
    let u = u.trim_end_matches('s');
    Some(match u {
        "sec" | "second" => Unit::Secs(1),
        "min" | "minute" => Unit::Secs(60),
        "hour" => Unit::Secs(3600),
        "day" => Unit::Days(1),
        "week" => Unit::Days(7),
        "fortnight" => Unit::Days(14),
        "month" => Unit::Months(1),
        "year" => Unit::Months(12),
        _ => return None,
    })
}

// ---------------------------------------------------------------- date

pub fn date(args: Vec<String>) -> i32 {
    let spec = Spec {
        short: "d:f:I::r:R:us:",
        long: &[
            l("date", Has::Req, 'd'),
            l("file", Has::Req, 'f'),
            l("iso-8601", Has::Opt, 'I'),
            l("reference", Has::Req, 'r'),
            l("rfc-email", Has::No, 'R'),
            l("rfc-822", Has::No, 'R'),
            l("rfc-2822", Has::No, 'R'),
            l("rfc-3339", Has::Req, '3'),
            l("utc", Has::No, 'u'),
            l("universal", Has::No, 'u'),
            l("set", Has::Req, 's'),
            l("debug", Has::No, 'D'),
        ],
        code: 1,
        help: "Usage: date [OPTION]... [+FORMAT]\nDisplay the current time in the given FORMAT (the time zone is always UTC).\n\n  -d, --date=STRING          display time described by STRING, not 'now'\n  -f, --file=DATEFILE        like --date; once for each line of DATEFILE\n  -I[FMT], --iso-8601[=FMT]  output date/time in ISO 8601 format (date, hours,\n                               minutes, seconds, ns)\n  -R, --rfc-email            output date and time in RFC 5322 format\n      --rfc-3339=FMT         output date/time in RFC 3339 format\n  -r, --reference=FILE       display the last modification time of FILE\n  -u, --utc, --universal     print Coordinated Universal Time (UTC)\n",
        stop_at_operand: false,
    };
    // `-R` takes no argument: patch the short spec (R: above is a typo guard)
    let spec = Spec { short: "d:f:I::r:Rus:", ..spec };
    let p = getopt(&args, &spec);
    let now = crate::sys::now();
    let mut when: Vec<(i64, u32)> = vec![now];
    let mut fmt: Option<String> = None;
    let mut nsel = 0;
    for (c, a) in &p.opts {
        match c {
            'd' => {
                let s = a.clone().unwrap();
                match parse_date(&s, now) {
                    Some(t) => when = vec![t],
                    None => die(1, &format!("invalid date {}", qa(&s))),
                }
                nsel += 1;
            }
            'f' => {
                let f = a.clone().unwrap();
                let data = match read_all(&f) {
                    Ok(d) => d,
                    Err(e) => die(1, &format!("{}: {}", q(&f), ioerr(&e))),
                };
                when.clear();
                for line in String::from_utf8_lossy(&data).lines() {
                    match parse_date(line, now) {
                        Some(t) => when.push(t),
                        None => {
                            err(&format!("invalid date {}", qa(line)));
                        }
                    }
                }
                nsel += 1;
            }
            'r' => {
                let f = a.clone().unwrap();
                match crate::sys::stat_s(&f) {
                    Ok(m) => when = vec![m.mtime],
                    Err(e) => die(1, &format!("{}: {}", q(&f), ioerr(&e))),
                }
                nsel += 1;
            }
            'I' => {
                let w = a.clone().unwrap_or_else(|| "date".into());
                fmt = Some(match w.as_str() {
                    "date" | "d" | "da" | "dat" => "%Y-%m-%d".into(),
                    "hours" | "h" | "ho" | "hou" | "hour" => "%Y-%m-%dT%H%:z".into(),
                    "minutes" | "m" | "mi" | "min" => "%Y-%m-%dT%H:%M%:z".into(),
                    "seconds" | "s" | "se" | "sec" => "%Y-%m-%dT%H:%M:%S%:z".into(),
                    "ns" | "n" => "%Y-%m-%dT%H:%M:%S,%N%:z".into(),
                    _ => usage_error(1, &format!("invalid argument {} for '--iso-8601'\nValid arguments are:\n  - 'hours'\n  - 'minutes'\n  - 'date'\n  - 'seconds'\n  - 'ns'", qa(&w))),
                });
            }
            'R' => fmt = Some("%a, %d %b %Y %H:%M:%S %z".into()),
            '3' => {
                let w = a.clone().unwrap();
                fmt = Some(match w.as_str() {
                    "date" => "%Y-%m-%d".into(),
                    "seconds" => "%Y-%m-%d %H:%M:%S%:z".into(),
                    "ns" => "%Y-%m-%d %H:%M:%S.%N%:z".into(),
                    _ => usage_error(1, &format!("invalid argument {} for '--rfc-3339'", qa(&w))),
                });
            }
            's' => die(1, "cannot set date: Operation not permitted"),
            _ => {}
        }
    }
    if nsel > 1 {
        usage_error(1, "the options to specify dates for printing are mutually exclusive");
    }
    for a in &p.args {
        if let Some(f) = a.strip_prefix('+') {
            if fmt.is_some() {
                if p.args.len() > 1 {
                    usage_error(1, &format!("extra operand {}", qa(&p.args[1])));
                }
                usage_error(1, "multiple output formats specified");
            }
            fmt = Some(f.to_string());
        } else {
            usage_error(1, &format!("invalid date {}", qa(a)));
        }
    }
    let fmt = fmt.unwrap_or_else(|| "%a %b %e %H:%M:%S %Z %Y".into());
    for t in when {
        let tm = tm_from_epoch(t.0, t.1);
        outf!("{}\n", strftime(&fmt, &tm));
    }
    0
}
