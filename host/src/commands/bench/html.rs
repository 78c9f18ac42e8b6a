//! `hybox bench --report DIR`: a self-contained HTML page (no scripts, no external assets)
//! with the run's machine and versions, the table, the warnings and the SVG charts of
//! [`super::svg`], written next to it.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

use super::report::{Report, TABLE_HEADER};
use super::svg::{self, escape};

/// The file name of the medians chart.
pub const MEDIANS_SVG: &str = "medians.svg";

/// The file name of the density scenario's memory chart.
pub const MEMORY_SVG: &str = "memory.svg";

/// One chart of the page: its file and what it shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chart {
    /// File name in the report folder.
    pub file: String,
    /// The case it belongs to, `None` for the medians and memory charts.
    pub case: Option<String>,
    /// The SVG text.
    pub svg: String,
}

/// Every chart of a report: the medians, the memory per item (density), then one CDF per
/// case with unit ms, in the document's order.
#[must_use]
pub fn charts(report: &Report) -> Vec<Chart> {
    let mut out = Vec::new();
    if let Some(svg) = svg::medians(report) {
        out.push(Chart {
            file: MEDIANS_SVG.to_owned(),
            case: None,
            svg,
        });
    }
    if let Some(svg) = svg::memory(report) {
        out.push(Chart {
            file: MEMORY_SVG.to_owned(),
            case: None,
            svg,
        });
    }
    for c in &report.cases {
        if let Some(svg) = svg::cdf(report, c) {
            out.push(Chart {
                file: svg::cdf_file_name(&c.name),
                case: Some(c.name.clone()),
                svg,
            });
        }
    }
    out
}

/// A JSON value as one line of text for the facts tables.
fn fact(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Null => "none".to_owned(),
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Array(items) => items.iter().map(fact).collect::<Vec<_>>().join(", "),
        other => other.to_string(),
    }
}

/// A two-column table of an object's fields (machine, versions).
fn facts_table(out: &mut String, title: &str, value: &serde_json::Value) {
    let _ = writeln!(out, "<h2>{}</h2>\n<table class=\"facts\">", escape(title));
    if let Some(map) = value.as_object() {
        for (k, v) in map {
            let _ = writeln!(
                out,
                "<tr><th>{}</th><td>{}</td></tr>",
                escape(k),
                escape(&fact(v))
            );
        }
    }
    out.push_str("</table>\n");
}

const STYLE: &str = "body{font-family:sans-serif;margin:2em;color:#222;max-width:1200px}\
table{border-collapse:collapse;margin:0.5em 0}\
td,th{border:1px solid #ccc;padding:3px 8px;text-align:left;vertical-align:top}\
table.results td.n{text-align:right;font-variant-numeric:tabular-nums}\
tr.hybox td:first-child{border-left:4px solid #1f77b4}\
tr.peer td:first-child{border-left:4px solid #ff7f0e}\
table.facts th{background:#f4f4f4;font-weight:normal}\
.warn{color:#8a4b00}\
figure{margin:1em 0}\
figcaption{color:#555;max-width:700px;font-size:90%}\
img{max-width:100%;height:auto;border:1px solid #eee}";

/// The page, its charts named by `charts` (as [`charts`] makes them).
#[must_use]
pub fn index(report: &Report, charts: &[Chart]) -> String {
    let mut out = String::new();
    let title = format!("hybox bench {}", report.scenarios.join(", "));
    let _ = writeln!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>{t}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<h1>{t}</h1>\n\
         <p>{} runs per case after {} warm-up, cases interleaved; started {} \
         (schema <code>{}</code>).</p>",
        report.runs,
        report.warmup,
        escape(&report.created_at),
        escape(&report.schema),
        t = escape(&title),
    );
    let _ = writeln!(out, "<p>machine: {}</p>", escape(&report.machine.line()));
    facts_table(
        &mut out,
        "Machine",
        &serde_json::to_value(&report.machine).unwrap_or_default(),
    );
    facts_table(
        &mut out,
        "Versions",
        &serde_json::to_value(&report.versions).unwrap_or_default(),
    );

    out.push_str("<h2>Results</h2>\n<table class=\"results\">\n<tr>");
    for h in TABLE_HEADER {
        let _ = write!(out, "<th>{}</th>", escape(h));
    }
    out.push_str("</tr>\n");
    for (row, case) in report.rows().iter().skip(1).zip(&report.cases) {
        let _ = write!(
            out,
            "<tr class=\"{}\" title=\"{}\">",
            escape(&row[1]),
            escape(&case.description)
        );
        for (k, cell) in row.iter().enumerate() {
            let class = if (2..=6).contains(&k) {
                " class=\"n\""
            } else {
                ""
            };
            let _ = write!(out, "<td{class}>{}</td>", escape(cell));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</table>\n");

    out.push_str("<h2>Warnings</h2>\n");
    if report.warnings.is_empty() {
        out.push_str("<p>none</p>\n");
    } else {
        out.push_str("<ul class=\"warn\">\n");
        for w in &report.warnings {
            let _ = writeln!(out, "<li>{}</li>", escape(w));
        }
        out.push_str("</ul>\n");
    }

    if let Some(m) = charts.iter().find(|c| c.file == MEDIANS_SVG) {
        let _ = writeln!(
            out,
            "<h2>Medians</h2>\n<figure><img src=\"{}\" alt=\"median (bar) and p90 (whisker) \
             of every case in ms, log scale\"><figcaption>Bar: median; whisker: p90. \
             hybox in blue, peers in orange; only cases measured in ms.</figcaption></figure>",
            escape(&m.file)
        );
    }
    if let Some(m) = charts.iter().find(|c| c.file == MEMORY_SVG) {
        let _ = writeln!(
            out,
            "<h2>Memory per item</h2>\n<figure><img src=\"{}\" alt=\"median MiB per idle \
             item of each kind\"><figcaption>The density scenario: one bar per item kind, to \
             the median memory one idle item adds; the label has the mean (total over count) \
             and how many fit the budget.</figcaption></figure>",
            escape(&m.file)
        );
    }
    let cdfs: Vec<&Chart> = charts.iter().filter(|c| c.case.is_some()).collect();
    if !cdfs.is_empty() {
        out.push_str(
            "<h2>Distributions</h2>\n<p>The empirical CDF of each case's samples (the fraction \
             of runs that took at most x ms), its peers overlaid.</p>\n",
        );
    }
    for c in cdfs {
        let name = c.case.as_deref().unwrap_or_default();
        let description = report
            .cases
            .iter()
            .find(|x| x.name == name)
            .map_or("", |x| x.description.as_str());
        let _ = writeln!(
            out,
            "<h3 id=\"{n}\">{n}</h3>\n<figure><img src=\"{}\" alt=\"CDF of {n}\">\
             <figcaption>{}</figcaption></figure>",
            escape(&c.file),
            escape(description),
            n = escape(name),
        );
    }
    out.push_str("</body>\n</html>\n");
    out
}

/// Writes `index.html` and the charts into `dir` (created if needed); returns the index's
/// path.
///
/// # Errors
/// When the folder or a file cannot be written.
pub fn write(dir: &Path, report: &Report) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let charts = charts(report);
    for c in &charts {
        let path = dir.join(&c.file);
        std::fs::write(&path, &c.svg).with_context(|| format!("write {}", path.display()))?;
    }
    let index = dir.join("index.html");
    std::fs::write(&index, self::index(report, &charts))
        .with_context(|| format!("write {}", index.display()))?;
    Ok(index)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::bench::svg::tests::tiny;

    #[test]
    fn page_has_facts_table_warnings_and_charts() {
        let r = tiny();
        let charts = charts(&r);
        let files: Vec<&str> = charts.iter().map(|c| c.file.as_str()).collect();
        assert_eq!(
            files,
            [
                "medians.svg",
                "memory.svg",
                "cdf-py_fast_.svg",
                "cdf-peer-py.svg"
            ],
            "no CDF for MiB or skipped cases"
        );
        let html = index(&r, &charts);
        assert!(html.starts_with("<!DOCTYPE html>"));
        assert!(!html.contains("<script"), "no scripts");
        assert!(
            !html.contains("http://") && !html.contains("https://"),
            "no external assets"
        );
        assert!(html.contains("<img src=\"medians.svg\""));
        assert!(html.contains("<img src=\"memory.svg\""));
        assert!(html.contains("<img src=\"cdf-py_fast_.svg\""));
        assert!(html.contains("<td>py&lt;fast&gt;</td>"), "names escaped");
        assert!(
            html.contains("<td>0.050x peer-py</td>"),
            "ratios as in the terminal"
        );
        assert!(html.contains("skipped: not &quot;installed&quot;"));
        assert!(html.contains("<li>load &lt;high&gt; &amp; &quot;busy&quot;</li>"));
        assert!(html.contains("measures &lt;py&lt;fast&gt;&gt; &amp; more"));
        assert!(html.contains("<th>cores</th>") && html.contains("<th>wasmtime</th>"));
        for h in TABLE_HEADER {
            assert!(html.contains(&format!("<th>{}</th>", escape(h))), "{h}");
        }
    }

    #[test]
    fn write_creates_the_folder_and_reads_back_json() {
        let r = tiny();
        let json = serde_json::to_string(&r).expect("serialize");
        let back = Report::from_json(&json).expect("read back");
        assert_eq!(back.cases.len(), r.cases.len());
        assert!(Report::from_json(&json.replace("hybox-bench/1", "hybox-bench/9")).is_err());
        let dir = std::env::temp_dir().join(format!(
            "hybox-bench-html-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let nested = dir.join("a/b");
        let index = write(&nested, &back).expect("write");
        assert!(index.is_file());
        assert!(nested.join("medians.svg").is_file());
        assert!(nested.join("cdf-peer-py.svg").is_file());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
