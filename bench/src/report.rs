//! The tables a run prints (and writes as JSON), and the figures they are made of.

use std::time::Duration;

/// The tables printed to stdout and, with `--json PATH`, written as JSON.
#[derive(Default)]
pub(crate) struct Report {
    pub(crate) sections: Vec<Section>,
}

pub(crate) struct Section {
    pub(crate) title: String,
    pub(crate) headers: Vec<&'static str>,
    pub(crate) rows: Vec<Vec<String>>,
}

impl Report {
    pub(crate) fn section(&mut self, title: impl Into<String>, headers: Vec<&'static str>) {
        let title = title.into();
        println!(
            "\n{title}\n\n| {} |\n|{}",
            headers.join(" | "),
            "---|".repeat(headers.len())
        );
        self.sections.push(Section {
            title,
            headers,
            rows: Vec::new(),
        });
    }

    pub(crate) fn row(&mut self, cells: Vec<String>) {
        println!("| {} |", cells.join(" | "));
        self.sections
            .last_mut()
            .expect("a section")
            .rows
            .push(cells);
    }

    pub(crate) fn json(&self) -> String {
        let quote = |text: &str| format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""));
        let list = |items: Vec<String>| format!("[{}]", items.join(","));
        let sections = self.sections.iter().map(
            |Section {
                 title,
                 headers,
                 rows,
             }| {
                let headers = list(headers.iter().map(|header| quote(header)).collect());
                let rows = rows
                    .iter()
                    .map(|row| list(row.iter().map(|cell| quote(cell)).collect()))
                    .collect();
                format!(
                    "{{\"title\":{},\"headers\":{headers},\"rows\":{}}}",
                    quote(title),
                    list(rows)
                )
            },
        );
        format!("{{\"sections\":{}}}\n", list(sections.collect()))
    }
}

pub(crate) fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort_unstable();
    samples[((samples.len() - 1) as f64 * p) as usize]
}

pub(crate) fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

pub(crate) fn us(duration: Duration) -> String {
    format!("{:.1} µs", duration.as_secs_f64() * 1e6)
}

pub(crate) fn ms(duration: Duration) -> String {
    format!("{:.1} ms", duration.as_secs_f64() * 1e3)
}

pub(crate) fn machine() -> String {
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines().find_map(|line| {
                let model = line.strip_prefix("model name")?;
                Some(model.trim_start_matches([' ', '\t', ':']).to_owned())
            })
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{model}, {cores} cores")
}
