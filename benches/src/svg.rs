//! Minimal SVG line and bar charts: no font or image dependencies.

use std::fmt::Write;

const COLORS: [&str; 9] =
    ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#17becf"];

/// A chart's size and margins, in pixels.
#[derive(Clone, Copy)]
struct Frame {
    width: f64,
    height: f64,
    left: f64,
    right: f64,
    top: f64,
    bottom: f64,
}

impl Frame {
    /// The document, its title, both axes and their labels.
    fn start(&self, title: &str, x_label: &str, y_label: &str) -> String {
        let Frame { width, height, left, right, top, bottom } = *self;
        let (x0, y0, x1) = (left, height - bottom, width - right);
        let mut svg = String::new();
        let _ = write!(
            svg,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">"#
        );
        let _ = write!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
        let _ = write!(svg, r#"<text x="{}" y="22" font-size="15" text-anchor="middle">{title}</text>"#, width / 2.0);
        let _ = write!(svg, r#"<line x1="{x0}" y1="{y0}" x2="{x1}" y2="{y0}" stroke="black"/>"#);
        let _ = write!(svg, r#"<line x1="{x0}" y1="{y0}" x2="{x0}" y2="{top}" stroke="black"/>"#);
        let _ =
            write!(svg, r#"<text x="{}" y="{}" text-anchor="middle">{x_label}</text>"#, (x0 + x1) / 2.0, height - 10.0);
        let _ = write!(
            svg,
            r#"<text x="16" y="{}" transform="rotate(-90 16 {0})" text-anchor="middle">{y_label}</text>"#,
            (y0 + top) / 2.0
        );
        svg
    }
}

/// Series of (x, y) points on shared axes starting at zero.
pub fn line_chart(title: &str, x_label: &str, y_label: &str, series: &[(String, Vec<(f64, f64)>)]) -> String {
    let frame = Frame { width: 760.0, height: 420.0, left: 70.0, right: 220.0, top: 40.0, bottom: 50.0 };
    let Frame { width, height, left, right, top, bottom } = frame;
    let points = series.iter().flat_map(|(_, points)| points.iter());
    let x_max = points.clone().map(|(x, _)| *x).fold(1.0, f64::max);
    let y_max = points.map(|(_, y)| *y).fold(0.0, f64::max).max(1e-9) * 1.1;
    let x = |value: f64| left + value / x_max * (width - left - right);
    let y = |value: f64| height - bottom - value / y_max * (height - top - bottom);
    let mut svg = frame.start(title, x_label, y_label);
    let (x0, y0, x1) = (left, height - bottom, width - right);
    for tick in 0..=5 {
        let value = y_max * tick as f64 / 5.0;
        let _ = write!(svg, r##"<line x1="{x0}" y1="{0}" x2="{x1}" y2="{0}" stroke="#ddd"/>"##, y(value));
        let _ = write!(svg, r#"<text x="{}" y="{}" text-anchor="end">{value:.2}</text>"#, x0 - 6.0, y(value) + 4.0);
    }
    let mut xs: Vec<f64> = series.iter().flat_map(|(_, p)| p.iter().map(|(x, _)| *x)).collect();
    xs.sort_by(f64::total_cmp);
    xs.dedup();
    // A time series labels six even ticks; a few measured sizes label themselves.
    let many = xs.len() > 12;
    if many {
        xs = (0..=5).map(|tick| (x_max * tick as f64 / 5.0).round()).collect();
    }
    for value in xs {
        let _ = write!(svg, r#"<text x="{}" y="{}" text-anchor="middle">{value}</text>"#, x(value), y0 + 18.0);
    }
    for (index, (name, points)) in series.iter().enumerate() {
        let color = COLORS[index % COLORS.len()];
        let dash = if name.starts_with("etcd") { r#" stroke-dasharray="6 4""# } else { "" };
        let path: Vec<String> = points.iter().map(|(px, py)| format!("{:.1},{:.1}", x(*px), y(*py))).collect();
        let _ = write!(
            svg,
            r#"<polyline fill="none" stroke="{color}" stroke-width="2"{dash} points="{}"/>"#,
            path.join(" ")
        );
        for (px, py) in points.iter().filter(|_| !many) {
            let _ = write!(svg, r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{color}"/>"#, x(*px), y(*py));
        }
        let ly = top + 16.0 * index as f64 + 10.0;
        let _ = write!(
            svg,
            r#"<line x1="{}" y1="{ly}" x2="{}" y2="{ly}" stroke="{color}" stroke-width="2"{dash}/>"#,
            x1 + 12.0,
            x1 + 36.0
        );
        let _ = write!(svg, r#"<text x="{}" y="{}">{name}</text>"#, x1 + 42.0, ly + 4.0);
    }
    svg.push_str("</svg>\n");
    svg
}

/// Grouped bars: for each label, one bar per series, on a log scale of
/// counts, so that one stall shows beside thousands of fast requests.
pub fn bar_chart(
    title: &str,
    x_label: &str,
    y_label: &str,
    labels: &[String],
    series: &[(String, Vec<u64>)],
) -> String {
    let frame = Frame { width: 860.0, height: 420.0, left: 70.0, right: 160.0, top: 40.0, bottom: 60.0 };
    let Frame { width, height, left, right, top, bottom } = frame;
    let most = series.iter().flat_map(|(_, counts)| counts.iter()).copied().max().unwrap_or(1).max(1) as f64;
    let decades = most.log10().ceil().max(1.0);
    // log10(count + 1): an empty bucket has no bar, a single request a visible one.
    let y = |count: u64| height - bottom - ((count as f64 + 1.0).log10() / decades).min(1.0) * (height - top - bottom);
    let group = (width - left - right) / labels.len().max(1) as f64;
    let bar = group * 0.8 / series.len().max(1) as f64;
    let mut svg = frame.start(title, x_label, &format!("{y_label} (log scale)"));
    let (x0, y0, x1) = (left, height - bottom, width - right);
    // Gridlines at 0, 10, 100, …: where log10(count + 1) is a whole number.
    for decade in 0..=decades as u32 {
        let (at, label) = match decade {
            0 => (y(0), 0),
            _ => (y(10u64.pow(decade) - 1), 10u64.pow(decade)),
        };
        let _ = write!(svg, r##"<line x1="{x0}" y1="{at}" x2="{x1}" y2="{at}" stroke="#ddd"/>"##);
        let _ = write!(svg, r#"<text x="{}" y="{}" text-anchor="end">{label}</text>"#, x0 - 6.0, at + 4.0);
    }
    for (index, label) in labels.iter().enumerate() {
        let center = left + group * (index as f64 + 0.5);
        let _ = write!(svg, r#"<text x="{center}" y="{}" text-anchor="middle">{label}</text>"#, y0 + 18.0);
    }
    for (which, (name, counts)) in series.iter().enumerate() {
        let color = COLORS[which % COLORS.len()];
        for (index, count) in counts.iter().enumerate().filter(|(_, count)| **count > 0) {
            let x = left + group * index as f64 + group * 0.1 + bar * which as f64;
            let top_y = y(*count);
            let _ = write!(
                svg,
                r#"<rect x="{x:.1}" y="{top_y:.1}" width="{bar:.1}" height="{:.1}" fill="{color}"><title>{name}: {count}</title></rect>"#,
                y0 - top_y
            );
        }
        let ly = top + 16.0 * which as f64 + 10.0;
        let _ = write!(svg, r#"<rect x="{}" y="{}" width="20" height="10" fill="{color}"/>"#, x1 + 12.0, ly - 5.0);
        let _ = write!(svg, r#"<text x="{}" y="{}">{name}</text>"#, x1 + 38.0, ly + 4.0);
    }
    svg.push_str("</svg>\n");
    svg
}
