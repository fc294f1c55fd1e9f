//! The markdown report: every figure beside the baseline measured in the same run and the
//! published figure, with the ratios, then the targets and the memory figures.

use std::fmt::Write;

use crate::stats::{fmt_dur, Samples, Summary};

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// Compared by p50 latency.
    Latency,
    /// Compared by operations per second.
    Throughput,
}

pub struct Row {
    pub section: String,
    pub scenario: String,
    pub summary: Summary,
    pub baseline: Option<(String, Summary, Metric)>,
    /// The published figure: milliseconds for [`Metric::Latency`], ops/s for throughput.
    pub published: Option<(f64, Metric)>,
    pub first_errors: Vec<String>,
    /// A baseline's own shortfall (etcd not sustaining the rate it was driven at) is a
    /// finding to report, not a failure of the run: its errors are listed but not counted.
    pub baseline_only: bool,
}

pub struct TargetLine {
    pub target: String,
    pub measured: String,
    pub met: bool,
}

#[derive(Default)]
pub struct Report {
    pub title: String,
    pub context: Vec<String>,
    pub rows: Vec<Row>,
    pub targets: Vec<TargetLine>,
    pub notes: Vec<(String, String)>,
}

impl Report {
    pub fn add(&mut self, section: &str, scenario: &str, s: &Samples) -> &mut Row {
        self.rows.push(Row {
            section: section.to_string(),
            scenario: scenario.to_string(),
            summary: s.summary(),
            baseline: None,
            published: None,
            first_errors: s.first_errors.clone(),
            baseline_only: false,
        });
        self.rows.last_mut().unwrap()
    }

    pub fn target(&mut self, target: &str, measured: String, met: bool) {
        self.targets.push(TargetLine {
            target: target.to_string(),
            measured,
            met,
        });
    }

    pub fn note(&mut self, what: &str, value: String) {
        self.notes.push((what.to_string(), value));
    }

    pub fn errors(&self) -> u64 {
        self.rows
            .iter()
            .filter(|r| !r.baseline_only)
            .map(|r| r.summary.errors)
            .sum()
    }

    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "# {}\n", self.title);
        for c in &self.context {
            let _ = writeln!(out, "- {c}");
        }
        let _ = writeln!(out);
        // Rows are grouped by section, sections in the order they first appear: the run
        // interleaves them (reads need the objects the writes made).
        let mut sections: Vec<&str> = Vec::new();
        for r in &self.rows {
            if !sections.contains(&r.section.as_str()) {
                sections.push(&r.section);
            }
        }
        let ordered = sections
            .iter()
            .flat_map(|sec| self.rows.iter().filter(move |r| r.section == *sec));
        let mut section = "";
        for r in ordered {
            if r.section != section {
                section = &r.section;
                let _ = writeln!(out, "\n## {section}\n");
                let _ = writeln!(
                    out,
                    "| Scenario | n | p50 | p95 | p99 | max | ops/s | errors | Baseline (same run) | vs baseline | Published | vs published |"
                );
                let _ = writeln!(
                    out,
                    "|---|---:|---:|---:|---:|---:|---:|---:|---|---|---:|---|"
                );
            }
            let s = &r.summary;
            let (base, vs_base) = match &r.baseline {
                None => ("".to_string(), "".to_string()),
                Some((name, b, Metric::Latency)) => (
                    format!("{name}: p50 {}", fmt_dur(b.p50)),
                    ratio_latency(s.p50.as_secs_f64(), b.p50.as_secs_f64()),
                ),
                Some((name, b, Metric::Throughput)) => (
                    format!("{name}: {:.0} ops/s", b.ops_per_sec),
                    if b.ops_per_sec > 0.0 {
                        format!("{:.0}% of its ops/s", 100.0 * s.ops_per_sec / b.ops_per_sec)
                    } else {
                        "n/a".into()
                    },
                ),
            };
            let (pubd, vs_pub) = match r.published {
                None => ("".to_string(), "".to_string()),
                Some((ms, Metric::Latency)) => {
                    let ours = s.p50.as_secs_f64() * 1e3;
                    (
                        format!("p50 {ms} ms"),
                        if ours > 0.0 {
                            format!("{:.0}× faster", ms / ours)
                        } else {
                            "n/a".into()
                        },
                    )
                }
                Some((ops, Metric::Throughput)) => (
                    format!("{ops} ops/s"),
                    format!("{:.1}× its ops/s", s.ops_per_sec / ops),
                ),
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {:.0} | {} | {base} | {vs_base} | {pubd} | {vs_pub} |",
                r.scenario,
                s.count,
                fmt_dur(s.p50),
                fmt_dur(s.p95),
                fmt_dur(s.p99),
                fmt_dur(s.max),
                s.ops_per_sec,
                s.errors,
            );
        }
        if !self.targets.is_empty() {
            let _ = writeln!(
                out,
                "\n## Targets\n\n| Target | Measured | Met |\n|---|---|---|"
            );
            for t in &self.targets {
                let _ = writeln!(
                    out,
                    "| {} | {} | {} |",
                    t.target,
                    t.measured,
                    if t.met { "yes" } else { "**no**" }
                );
            }
        }
        if !self.notes.is_empty() {
            let _ = writeln!(
                out,
                "\n## Memory and other figures\n\n| What | Figure |\n|---|---|"
            );
            for (k, v) in &self.notes {
                let _ = writeln!(out, "| {k} | {v} |");
            }
        }
        let failing: Vec<&Row> = self.rows.iter().filter(|r| r.summary.errors > 0).collect();
        if !failing.is_empty() {
            let _ = writeln!(out, "\n## Errors\n");
            for r in failing {
                let whose = if r.baseline_only {
                    " (the baseline's, not counted as a failure of the run)"
                } else {
                    ""
                };
                let _ = writeln!(
                    out,
                    "- {} / {}: {} errors{whose}, first: {:?}",
                    r.section, r.scenario, r.summary.errors, r.first_errors
                );
            }
        }
        out
    }
}

fn ratio_latency(ours: f64, base: f64) -> String {
    if base <= 0.0 {
        return "n/a".into();
    }
    format!("{:.2}× its p50", ours / base)
}

pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}
