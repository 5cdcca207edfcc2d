//! The wait-time distributions of the contention rows as an SVG chart: one cumulative curve per
//! implementation and master count, on a logarithmic time axis (a fair lock's curve rises
//! steeply; a starving one has a long flat tail to the right).

use std::{fmt::Write, time::Duration};

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 380.0;
const LEFT: f64 = 60.0;
const RIGHT: f64 = 200.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 50.0;
const COLOURS: [&str; 4] = ["#1f77b4", "#aec7e8", "#d62728", "#ff9896"];

/// One curve: its label and its samples.
pub(crate) struct Series {
    pub(crate) label: String,
    pub(crate) waits: Vec<Duration>,
}

/// The chart: the share of acquisitions (y) that waited at most t (x, log scale).
pub(crate) fn cumulative(title: &str, series: &[Series]) -> String {
    let longest = series
        .iter()
        .flat_map(|series| series.waits.iter())
        .max()
        .copied()
        .unwrap_or(Duration::from_millis(1));
    // Decades from 10 µs to the one above the longest wait.
    let (low, high) = (-5.0, (longest.as_secs_f64().max(1e-4)).log10().ceil());
    let plot_width = WIDTH - LEFT - RIGHT;
    let plot_height = HEIGHT - TOP - BOTTOM;
    let x = |seconds: f64| {
        let at = seconds.max(1e-5).log10().clamp(low, high);
        LEFT + (at - low) / (high - low) * plot_width
    };
    let y = |share: f64| TOP + (1.0 - share) * plot_height;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="{LEFT}" y="22" font-size="14">{title}</text>
"##
    );
    for decade in (low as i32)..=(high as i32) {
        let at = x(10f64.powi(decade));
        let label = match decade {
            -5 => "10 µs".to_owned(),
            -4 => "100 µs".to_owned(),
            -3 => "1 ms".to_owned(),
            -2 => "10 ms".to_owned(),
            -1 => "100 ms".to_owned(),
            0 => "1 s".to_owned(),
            decade => format!("{} s", 10i64.pow(decade as u32)),
        };
        let _ = writeln!(
            svg,
            r##"<line x1="{at:.1}" y1="{TOP}" x2="{at:.1}" y2="{:.1}" stroke="#ddd"/><text x="{at:.1}" y="{:.1}" text-anchor="middle">{label}</text>"##,
            HEIGHT - BOTTOM,
            HEIGHT - BOTTOM + 18.0
        );
    }
    for share in [0.0, 0.25, 0.5, 0.75, 1.0] {
        let at = y(share);
        let _ = writeln!(
            svg,
            r##"<line x1="{LEFT}" y1="{at:.1}" x2="{:.1}" y2="{at:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{:.0}%</text>"##,
            WIDTH - RIGHT,
            LEFT - 6.0,
            at + 4.0,
            share * 100.0
        );
    }
    let _ = writeln!(
        svg,
        r##"<text x="{:.1}" y="{:.1}" text-anchor="middle">wait from request to grant (log scale); share of acquisitions</text>"##,
        LEFT + plot_width / 2.0,
        HEIGHT - 10.0
    );
    for (index, series) in series.iter().enumerate() {
        let colour = COLOURS[index % COLOURS.len()];
        let mut waits: Vec<f64> = series.waits.iter().map(Duration::as_secs_f64).collect();
        waits.sort_by(f64::total_cmp);
        let count = waits.len().max(1);
        let first = x(waits.first().copied().unwrap_or(1e-5));
        let mut points = format!("{first:.1},{:.1}", y(0.0));
        // At most ~500 points a curve (and always the last): the file stays small.
        let step = count.div_ceil(500);
        for (rank, wait) in waits.iter().enumerate() {
            if (rank + 1) % step == 0 || rank + 1 == count {
                let share = (rank + 1) as f64 / count as f64;
                let _ = write!(points, " {:.1},{:.1}", x(*wait), y(share));
            }
        }
        let legend = TOP + 20.0 * index as f64;
        let _ = writeln!(
            svg,
            r##"<polyline fill="none" stroke="{colour}" stroke-width="2" points="{points}"/>
<line x1="{:.1}" y1="{legend:.1}" x2="{:.1}" y2="{legend:.1}" stroke="{colour}" stroke-width="3"/><text x="{:.1}" y="{:.1}">{}</text>"##,
            WIDTH - RIGHT + 10.0,
            WIDTH - RIGHT + 30.0,
            WIDTH - RIGHT + 36.0,
            legend + 4.0,
            series.label
        );
    }
    svg.push_str("</svg>\n");
    svg
}
