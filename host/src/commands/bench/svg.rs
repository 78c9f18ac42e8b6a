//! Hand-drawn SVG charts of a `hybox-bench/1` document: the medians of every case on one
//! log-scale axis, one empirical CDF per case with its peers overlaid, and the density
//! scenario's memory per item.

use std::fmt::Write as _;

use super::report::{CaseReport, Kind, Report, num};

/// hybox's colour.
pub const HYBOX_COLOUR: &str = "#1f77b4";
/// The peers' colour in the medians chart.
pub const PEER_COLOUR: &str = "#ff7f0e";
/// The colours of the series of a CDF chart, the case's own first.
const SERIES_COLOURS: &[&str] = &[
    "#1f77b4", "#d62728", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
];

/// Escapes text for HTML and XML, text and attribute values alike; drops the control
/// characters XML 1.0 forbids.
#[must_use]
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// A log-scale axis: whole decades from `lo` to `hi` and its labelled ticks.
#[derive(Debug, Clone, PartialEq)]
pub struct LogAxis {
    /// Exponent of the decade at the left end (10^lo).
    pub lo: i32,
    /// Exponent of the decade at the right end (10^hi), above `lo`.
    pub hi: i32,
    /// The labelled ticks, ascending: every power of ten, and also 2 and 5 times it when the
    /// axis spans at most two decades.
    pub ticks: Vec<f64>,
}

impl LogAxis {
    /// The axis covering the positive values `min..=max` (non-positive or non-finite ones give
    /// the 1..10 decade).
    #[must_use]
    pub fn covering(min: f64, max: f64) -> Self {
        let ok = |x: f64| x.is_finite() && x > 0.0;
        let (min, max) = match (ok(min), ok(max)) {
            (true, true) => (min.min(max), min.max(max)),
            (true, false) => (min, min),
            (false, true) => (max, max),
            (false, false) => (1.0, 1.0),
        };
        // A hair of slack so 10.0 stays in the 1..10 decade despite rounding in log10.
        let lo = (min.log10() + 1e-9).floor() as i32;
        let hi = ((max.log10() - 1e-9).ceil() as i32).max(lo + 1);
        let mut ticks = Vec::new();
        let fine = hi - lo <= 2;
        for k in lo..=hi {
            ticks.push(decade(1, k));
            if fine && k < hi {
                ticks.push(decade(2, k));
                ticks.push(decade(5, k));
            }
        }
        Self { lo, hi, ticks }
    }

    /// Where `x` lies on the axis, 0.0 at the left end to 1.0 at the right (clamped).
    #[must_use]
    pub fn fraction(&self, x: f64) -> f64 {
        if !(x.is_finite() && x > 0.0) {
            return 0.0;
        }
        ((x.log10() - f64::from(self.lo)) / f64::from(self.hi - self.lo)).clamp(0.0, 1.0)
    }
}

/// `m` times 10^`k`, exact enough to print.
fn decade(m: u8, k: i32) -> f64 {
    // Parsing the decimal text avoids 3 * 0.1 style drift.
    format!("{m}e{k}").parse().unwrap_or(f64::NAN)
}

/// A tick's label: `0.1`, `2`, `1000`, `0.05`.
#[must_use]
pub fn tick_label(x: f64) -> String {
    if x >= 1.0 {
        format!("{x:.0}")
    } else {
        // The slack keeps 0.1 at one decimal despite rounding in log10.
        let decimals = (-x.log10() - 1e-9).ceil().max(0.0) as usize;
        format!("{x:.decimals$}")
    }
}

/// Opens an SVG document of the given size with a white background and the shared style.
fn open(out: &mut String, width: f64, height: f64, title: &str) {
    let _ = write!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" \
         viewBox=\"0 0 {width} {height}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <title>{}</title>\n\
         <rect width=\"{width}\" height=\"{height}\" fill=\"#ffffff\"/>\n",
        escape(title)
    );
}

/// A vertical grid of the log axis across `top..bottom`, its labels below and its title.
fn log_grid(out: &mut String, axis: &LogAxis, x0: f64, w: f64, top: f64, bottom: f64) {
    for &t in &axis.ticks {
        let x = x0 + axis.fraction(t) * w;
        let major = (t.log10() - t.log10().round()).abs() < 1e-9;
        let stroke = if major { "#bbbbbb" } else { "#e4e4e4" };
        let _ = writeln!(
            out,
            "<line x1=\"{x:.1}\" y1=\"{top:.1}\" x2=\"{x:.1}\" y2=\"{bottom:.1}\" \
             stroke=\"{stroke}\"/>\n<text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\" \
             fill=\"#333333\">{}</text>",
            bottom + 16.0,
            escape(&tick_label(t))
        );
    }
    let _ = writeln!(
        out,
        "<line x1=\"{x0:.1}\" y1=\"{bottom:.1}\" x2=\"{:.1}\" y2=\"{bottom:.1}\" \
         stroke=\"#333333\"/>\n<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" \
         fill=\"#333333\">milliseconds (log scale)</text>",
        x0 + w,
        x0 + w / 2.0,
        bottom + 34.0
    );
}

/// A legend entry: a colour swatch and its text, at (`x`, `y`) the swatch's top left.
fn legend(out: &mut String, x: f64, y: f64, colour: &str, text: &str) {
    let _ = writeln!(
        out,
        "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"12\" height=\"12\" fill=\"{colour}\"/>\n\
         <text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
        x + 17.0,
        y + 10.5,
        escape(text)
    );
}

/// The cases a chart draws: unit ms.
fn in_ms(c: &CaseReport) -> bool {
    c.unit == "ms"
}

/// The medians chart: one horizontal bar per case with unit ms (to its median, a whisker to
/// its p90), grouped by scenario, hybox's and the peers' in two colours, on a log axis.
/// `None` when no case has unit ms.
#[must_use]
pub fn medians(report: &Report) -> Option<String> {
    let mut scenarios: Vec<&str> = report.scenarios.iter().map(String::as_str).collect();
    for c in report.cases.iter().filter(|c| in_ms(c)) {
        if !scenarios.contains(&c.scenario.as_str()) {
            scenarios.push(&c.scenario);
        }
    }
    let groups: Vec<(&str, Vec<&CaseReport>)> = scenarios
        .iter()
        .map(|s| {
            let cases = report
                .cases
                .iter()
                .filter(|c| in_ms(c) && c.scenario == *s)
                .collect::<Vec<_>>();
            (*s, cases)
        })
        .filter(|(_, cases)| !cases.is_empty())
        .collect();
    if groups.is_empty() {
        return None;
    }
    let measured = groups.iter().flat_map(|(_, cs)| cs.iter());
    let lo = measured
        .clone()
        .filter_map(|c| c.min.or(c.median))
        .fold(f64::INFINITY, f64::min);
    let hi = measured
        .filter_map(|c| c.p90.or(c.median))
        .fold(f64::NEG_INFINITY, f64::max);
    let axis = LogAxis::covering(lo, hi);

    let (label_w, plot_w, right) = (250.0, 560.0, 110.0);
    let (row_h, head_h, top) = (22.0, 26.0, 40.0);
    let rows: usize = groups.iter().map(|(_, cs)| cs.len()).sum();
    let plot_h = rows as f64 * row_h + groups.len() as f64 * head_h;
    let width = label_w + plot_w + right;
    let height = top + plot_h + 50.0;
    let mut out = String::new();
    open(
        &mut out,
        width,
        height,
        "median per case (bar) and p90 (whisker), ms",
    );
    legend(&mut out, label_w, 12.0, HYBOX_COLOUR, "hybox");
    legend(&mut out, label_w + 80.0, 12.0, PEER_COLOUR, "peer");
    let _ = writeln!(
        out,
        "<text x=\"{:.1}\" y=\"22.5\" fill=\"#555555\">bar: median, whisker: p90</text>",
        label_w + 160.0
    );
    log_grid(&mut out, &axis, label_w, plot_w, top, top + plot_h);
    let x_of = |v: f64| label_w + axis.fraction(v) * plot_w;
    let mut y = top;
    for (scenario, cases) in &groups {
        let _ = writeln!(
            out,
            "<text x=\"8\" y=\"{:.1}\" font-weight=\"bold\">{}</text>",
            y + 17.0,
            escape(scenario)
        );
        y += head_h;
        for c in cases {
            let mid = y + row_h / 2.0;
            let _ = writeln!(
                out,
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
                label_w - 8.0,
                mid + 4.0,
                escape(&c.name)
            );
            let colour = match c.kind {
                Kind::Hybox => HYBOX_COLOUR,
                Kind::Peer => PEER_COLOUR,
            };
            match (c.median, &c.skipped) {
                (Some(median), None) => {
                    let xm = x_of(median);
                    let _ = writeln!(
                        out,
                        "<rect x=\"{label_w:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" \
                         fill=\"{colour}\"><title>{}</title></rect>",
                        y + 4.0,
                        (xm - label_w).max(1.0),
                        row_h - 8.0,
                        escape(&format!(
                            "{}: median {} ms, p90 {} ms",
                            c.name,
                            num(median),
                            c.p90.map_or_else(|| "-".to_owned(), num)
                        ))
                    );
                    let mut end = xm;
                    if let Some(p90) = c.p90 {
                        let xp = x_of(p90);
                        end = xp.max(xm);
                        let _ = writeln!(
                            out,
                            "<line x1=\"{xm:.1}\" y1=\"{mid:.1}\" x2=\"{xp:.1}\" y2=\"{mid:.1}\" \
                             stroke=\"#222222\"/>\n<line x1=\"{xp:.1}\" y1=\"{:.1}\" \
                             x2=\"{xp:.1}\" y2=\"{:.1}\" stroke=\"#222222\"/>",
                            mid - 5.0,
                            mid + 5.0
                        );
                    }
                    let _ = writeln!(
                        out,
                        "<text x=\"{:.1}\" y=\"{:.1}\" fill=\"#333333\">{} ms</text>",
                        end + 6.0,
                        mid + 4.0,
                        escape(&num(median))
                    );
                }
                _ => {
                    let _ = writeln!(
                        out,
                        "<text x=\"{:.1}\" y=\"{:.1}\" fill=\"#888888\">skipped</text>",
                        label_w + 6.0,
                        mid + 4.0
                    );
                }
            }
            y += row_h;
        }
    }
    out.push_str("</svg>\n");
    Some(out)
}

/// The memory chart of the density scenario: one horizontal bar per item kind (each case
/// with unit MiB), to its median MiB per item on a linear axis from 0, labelled with the mean
/// and how many fit (its `-density` case). `None` when no such case was measured.
#[must_use]
pub fn memory(report: &Report) -> Option<String> {
    let cases: Vec<&CaseReport> = report
        .cases
        .iter()
        .filter(|c| c.unit == "MiB" && c.skipped.is_none() && c.median.is_some())
        .collect();
    if cases.is_empty() {
        return None;
    }
    let top_value = cases
        .iter()
        .filter_map(|c| c.median)
        .fold(0.0_f64, f64::max)
        .max(f64::MIN_POSITIVE);
    let step = nice_step(top_value / 4.0);
    let axis_max = (top_value / step).ceil() * step;
    let (label_w, plot_w, right) = (220.0, 480.0, 260.0);
    let (row_h, top) = (26.0, 40.0);
    let plot_h = cases.len() as f64 * row_h;
    let width = label_w + plot_w + right;
    let height = top + plot_h + 50.0;
    let mut out = String::new();
    open(&mut out, width, height, "memory per item (median), MiB");
    let _ = writeln!(
        out,
        "<text x=\"{label_w:.1}\" y=\"22.5\" fill=\"#555555\">bar: median MiB per idle \
         item; label: mean (total over count) and how many fit the budget</text>"
    );
    let x_of = |v: f64| label_w + (v / axis_max).clamp(0.0, 1.0) * plot_w;
    let bottom = top + plot_h;
    let mut tick = 0.0;
    while tick <= axis_max + step / 2.0 {
        let x = x_of(tick);
        let _ = writeln!(
            out,
            "<line x1=\"{x:.1}\" y1=\"{top:.1}\" x2=\"{x:.1}\" y2=\"{bottom:.1}\" \
             stroke=\"#e4e4e4\"/>\n<text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\" \
             fill=\"#333333\">{}</text>",
            bottom + 16.0,
            escape(&num(tick))
        );
        tick += step;
    }
    let _ = writeln!(
        out,
        "<line x1=\"{label_w:.1}\" y1=\"{bottom:.1}\" x2=\"{:.1}\" y2=\"{bottom:.1}\" \
         stroke=\"#333333\"/>\n<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" \
         fill=\"#333333\">MiB per item</text>",
        label_w + plot_w,
        label_w + plot_w / 2.0,
        bottom + 34.0
    );
    for (i, c) in cases.iter().enumerate() {
        let y = top + i as f64 * row_h;
        let mid = y + row_h / 2.0;
        let median = c.median.unwrap_or_default();
        let count = c
            .name
            .strip_suffix("-memory")
            .map(|stem| format!("{stem}-density"))
            .and_then(|n| report.cases.iter().find(|d| d.name == n))
            .and_then(|d| d.median);
        let label = format!(
            "{} MiB (mean {}){}",
            num(median),
            c.mean.map_or_else(|| "-".to_owned(), num),
            count.map_or_else(String::new, |n| format!(", {n:.0} fit"))
        );
        let _ = writeln!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>\n\
             <rect x=\"{label_w:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" \
             fill=\"{HYBOX_COLOUR}\"><title>{}</title></rect>\n\
             <text x=\"{:.1}\" y=\"{:.1}\" fill=\"#333333\">{}</text>",
            label_w - 8.0,
            mid + 4.0,
            escape(&c.name),
            y + 4.0,
            (x_of(median) - label_w).max(1.0),
            row_h - 8.0,
            escape(&format!("{}: {label}", c.name)),
            x_of(median) + 6.0,
            mid + 4.0,
            escape(&label)
        );
    }
    out.push_str("</svg>\n");
    Some(out)
}

/// A round step (1, 2 or 5 times a power of ten) at least `x`.
fn nice_step(x: f64) -> f64 {
    if !(x.is_finite() && x > 0.0) {
        return 1.0;
    }
    let p = 10f64.powf(x.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * p)
        .find(|s| *s >= x * (1.0 - 1e-9))
        .unwrap_or(10.0 * p)
}

/// The series a case's CDF shows: the case, then the peers it is compared with, each with
/// samples.
fn cdf_series<'a>(report: &'a Report, case: &'a CaseReport) -> Vec<&'a CaseReport> {
    let mut series = vec![case];
    for cmp in &case.compare {
        if let Some(peer) = report.cases.iter().find(|c| c.name == cmp.peer) {
            series.push(peer);
        }
    }
    series.retain(|c| c.skipped.is_none() && !c.samples.is_empty());
    series
}

/// The file name of a case's CDF chart: `cdf-<case>.svg`, any character outside
/// `[A-Za-z0-9_.-]` replaced by `_`.
#[must_use]
pub fn cdf_file_name(case: &str) -> String {
    let safe: String = case
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("cdf-{safe}.svg")
}

/// The empirical CDF of a case with unit ms (a step from each sorted sample to the next), its
/// peers overlaid in other colours, on a log axis. `None` for a case of another unit or
/// without samples.
#[must_use]
pub fn cdf(report: &Report, case: &CaseReport) -> Option<String> {
    if !in_ms(case) || case.skipped.is_some() || case.samples.is_empty() {
        return None;
    }
    let series = cdf_series(report, case);
    let all = series.iter().flat_map(|c| c.samples.iter().copied());
    let lo = all.clone().fold(f64::INFINITY, f64::min);
    let hi = all.fold(f64::NEG_INFINITY, f64::max);
    let axis = LogAxis::covering(lo, hi);

    let (left, plot_w, right) = (60.0, 620.0, 20.0);
    let legend_h = 20.0 * series.len() as f64;
    let top = 16.0 + legend_h + 8.0;
    let plot_h = 280.0;
    let width = left + plot_w + right;
    let height = top + plot_h + 50.0;
    let mut out = String::new();
    open(
        &mut out,
        width,
        height,
        &format!("{}: empirical CDF of the samples, ms", case.name),
    );
    for (i, s) in series.iter().enumerate() {
        let colour = SERIES_COLOURS[i % SERIES_COLOURS.len()];
        let text = format!(
            "{} ({}, n={}, median {} ms)",
            s.name,
            match s.kind {
                Kind::Hybox => "hybox",
                Kind::Peer => "peer",
            },
            s.samples.len(),
            s.median.map_or_else(|| "-".to_owned(), num)
        );
        legend(&mut out, left, 10.0 + 20.0 * i as f64, colour, &text);
    }
    let bottom = top + plot_h;
    let y_of = |f: f64| bottom - f * plot_h;
    for q in [0.0, 0.25, 0.5, 0.75, 1.0] {
        let y = y_of(q);
        let _ = writeln!(
            out,
            "<line x1=\"{left:.1}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" \
             stroke=\"#e4e4e4\"/>\n<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" \
             fill=\"#333333\">{q:.2}</text>",
            left + plot_w,
            left - 6.0,
            y + 4.0
        );
    }
    let _ = writeln!(
        out,
        "<line x1=\"{left:.1}\" y1=\"{top:.1}\" x2=\"{left:.1}\" y2=\"{bottom:.1}\" \
         stroke=\"#333333\"/>\n<text x=\"14\" y=\"{:.1}\" text-anchor=\"middle\" \
         transform=\"rotate(-90 14 {:.1})\" fill=\"#333333\">fraction of runs</text>",
        top + plot_h / 2.0,
        top + plot_h / 2.0
    );
    log_grid(&mut out, &axis, left, plot_w, top, bottom);
    let x_of = |v: f64| left + axis.fraction(v) * plot_w;
    for (i, s) in series.iter().enumerate() {
        let colour = SERIES_COLOURS[i % SERIES_COLOURS.len()];
        let mut sorted = s.samples.clone();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len() as f64;
        let mut d = format!("M{:.1},{:.1}", x_of(sorted[0]), y_of(0.0));
        for (k, &v) in sorted.iter().enumerate() {
            let _ = write!(d, " H{:.1} V{:.1}", x_of(v), y_of((k + 1) as f64 / n));
        }
        let _ = writeln!(
            out,
            "<path d=\"{d}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\">\
             <title>{}</title></path>",
            escape(&s.name)
        );
    }
    out.push_str("</svg>\n");
    Some(out)
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use crate::commands::bench::machine::Machine;
    use crate::commands::bench::report::{Compare, SCHEMA, Versions};

    /// A case for the charts' tests.
    pub fn case(name: &str, kind: Kind, unit: &str, samples: &[f64]) -> CaseReport {
        let mut sorted = samples.to_vec();
        sorted.sort_by(f64::total_cmp);
        CaseReport {
            name: name.to_owned(),
            kind,
            scenario: "cold-start".to_owned(),
            description: format!("measures <{name}> & more"),
            runs: samples.len(),
            warmup: 0,
            unit: unit.to_owned(),
            median: sorted.get(sorted.len() / 2).copied(),
            p90: sorted.last().copied(),
            p99: None,
            min: sorted.first().copied(),
            max: sorted.last().copied(),
            mean: sorted.first().copied(),
            samples: samples.to_vec(),
            skipped: None,
            compare: Vec::new(),
        }
    }

    /// A tiny result: a hybox case compared with one peer, a memory case, a skipped peer.
    pub fn tiny() -> Report {
        let mut mine = case("py<fast>", Kind::Hybox, "ms", &[1.5, 2.0, 2.5]);
        mine.compare.push(Compare {
            peer: "peer-py".to_owned(),
            ratio: 0.05,
        });
        let mut skipped = case("peer-gone", Kind::Peer, "ms", &[]);
        skipped.skipped = Some("not \"installed\"".to_owned());
        Report {
            schema: SCHEMA.to_owned(),
            created_at: "2026-01-01T00:00:00.000Z".to_owned(),
            scenarios: vec!["cold-start".to_owned()],
            runs: 3,
            warmup: 0,
            machine: Machine::detect(),
            versions: Versions::default(),
            cases: vec![
                mine,
                case("memory", Kind::Hybox, "MiB", &[6.0, 6.1, 6.2]),
                case("peer-py", Kind::Peer, "ms", &[40.0, 45.0, 300.0]),
                skipped,
            ],
            warnings: vec!["load <high> & \"busy\"".to_owned()],
        }
    }

    #[test]
    fn escape_covers_markup_and_control_characters() {
        assert_eq!(
            escape("a<b>&\"c\" 'd'\u{1}\n"),
            "a&lt;b&gt;&amp;&quot;c&quot; &#39;d&#39;\n"
        );
        assert_eq!(escape("plain-name_1"), "plain-name_1");
    }

    #[test]
    fn log_ticks_span_whole_decades() {
        let a = LogAxis::covering(0.75, 440.0);
        assert_eq!((a.lo, a.hi), (-1, 3));
        assert_eq!(a.ticks, [0.1, 1.0, 10.0, 100.0, 1000.0]);
        let labels: Vec<String> = a.ticks.iter().map(|&t| tick_label(t)).collect();
        assert_eq!(labels, ["0.1", "1", "10", "100", "1000"]);

        let narrow = LogAxis::covering(4.0, 5.9);
        assert_eq!((narrow.lo, narrow.hi), (0, 1));
        assert_eq!(narrow.ticks, [1.0, 2.0, 5.0, 10.0]);

        let exact = LogAxis::covering(1.0, 10.0);
        assert_eq!((exact.lo, exact.hi), (0, 1), "a decade's ends stay in it");
        let two = LogAxis::covering(0.03, 0.9);
        assert_eq!(two.ticks, [0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0]);
        assert_eq!(tick_label(0.02), "0.02");
        assert_eq!(tick_label(0.5), "0.5");

        let none = LogAxis::covering(f64::NAN, -1.0);
        assert_eq!((none.lo, none.hi), (0, 1));
        assert!((a.fraction(1.0) - 0.25).abs() < 1e-12);
        assert!(a.fraction(1e9) <= 1.0 && a.fraction(0.0) == 0.0);
    }

    #[test]
    fn medians_chart_draws_ms_cases_with_labels() {
        let svg = medians(&tiny()).expect("ms cases");
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains(">py&lt;fast&gt;</text>"), "names escaped");
        assert!(svg.contains(">peer-py</text>"));
        assert!(!svg.contains(">memory</text>"), "only ms cases");
        assert!(svg.contains(">cold-start</text>"), "scenario heading");
        assert!(svg.contains(">skipped</text>"));
        for tick in [">1</text>", ">10</text>", ">100</text>", ">1000</text>"] {
            assert!(svg.contains(tick), "{tick}");
        }
        assert_eq!(
            svg.matches(&format!("fill=\"{HYBOX_COLOUR}\"><title>"))
                .count(),
            1
        );
        assert_eq!(
            svg.matches(&format!("fill=\"{PEER_COLOUR}\"><title>"))
                .count(),
            1
        );
        assert!(svg.contains(">2.00 ms</text>"));
    }

    #[test]
    fn memory_chart_has_one_bar_per_item_kind() {
        let mut r = tiny();
        r.cases[1].name = "python-context-memory".to_owned();
        r.cases.push(case(
            "python-context-density",
            Kind::Hybox,
            "contexts",
            &[38.0],
        ));
        r.cases
            .push(case("js-context-memory", Kind::Hybox, "MiB", &[1.0, 1.2]));
        let svg = memory(&r).expect("MiB cases");
        assert_eq!(
            svg.matches(&format!("fill=\"{HYBOX_COLOUR}\"><title>"))
                .count(),
            2
        );
        assert!(svg.contains(">python-context-memory</text>"));
        assert!(svg.contains("6.10 MiB (mean 6.00), 38 fit"), "{svg}");
        assert!(svg.contains(">js-context-memory</text>"));
        assert!(memory(&tiny_without_memory()).is_none());
        assert!((nice_step(1.6) - 2.0).abs() < 1e-12);
        assert!((nice_step(0.3) - 0.5).abs() < 1e-12);
        assert!((nice_step(7.0) - 10.0).abs() < 1e-12);
    }

    fn tiny_without_memory() -> Report {
        let mut r = tiny();
        r.cases.retain(|c| c.unit != "MiB");
        r
    }

    #[test]
    fn cdf_chart_overlays_the_peers() {
        let r = tiny();
        let svg = cdf(&r, &r.cases[0]).expect("ms case");
        assert_eq!(svg.matches("<path ").count(), 2, "the case and its peer");
        assert!(svg.contains("py&lt;fast&gt; (hybox, n=3, median 2.00 ms)"));
        assert!(svg.contains("peer-py (peer, n=3, median 45.0 ms)"));
        assert!(svg.contains(" H"), "a step plot");
        assert!(svg.contains(">fraction of runs</text>"));
        assert!(cdf(&r, &r.cases[1]).is_none(), "MiB has no CDF");
        assert!(cdf(&r, &r.cases[3]).is_none(), "skipped has no CDF");
        let peer = cdf(&r, &r.cases[2]).expect("a peer alone");
        assert_eq!(peer.matches("<path ").count(), 1);
        assert_eq!(cdf_file_name("a/b c"), "cdf-a_b_c.svg");
    }
}
