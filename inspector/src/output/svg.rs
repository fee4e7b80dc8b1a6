//! Small, dependency-free SVG charts for `inspector bench --svg DIR`: horizontal grouped bars
//! (a median with a whisker to p99 or to the spread's max) and lines over a log axis.
use std::fmt::Write as _;

/// Colours of the series, in order.
const COLOURS: [&str; 6] = [
    "#4477aa", "#ee6677", "#228833", "#ccbb44", "#66ccee", "#aa3377",
];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// About five round ticks from 0 to at least `max`.
fn ticks(max: f64) -> Vec<f64> {
    if max <= 0.0 || !max.is_finite() {
        return vec![0.0, 1.0];
    }
    let raw = max / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    let mut v = Vec::new();
    let mut t = 0.0;
    while t < max + step * 0.999 {
        v.push(t);
        t += step;
    }
    v
}

fn fmt_num(v: f64) -> String {
    if v >= 100.0 || (v - v.round()).abs() < 1e-9 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// The document's start: white background, title, and a legend at `left` naming the series.
fn head(width: f64, height: f64, title: &str, left: f64, series: &[&str]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="10" y="22" font-size="15" font-weight="bold">{}</text>"#,
        esc(title)
    );
    for (i, name) in series.iter().enumerate() {
        let y = 40.0 + 18.0 * i as f64;
        let _ = writeln!(
            s,
            r#"<rect x="{left}" y="{}" width="12" height="12" fill="{}"/><text x="{}" y="{}">{}</text>"#,
            y - 10.0,
            COLOURS[i % COLOURS.len()],
            left + 18.0,
            y,
            esc(name)
        );
    }
    s
}

/// One bar: the value and an optional whisker end.
pub type Bar = Option<(f64, Option<f64>)>;

/// Horizontal grouped bars: one group per category, one bar per series.
#[must_use]
pub fn bars(
    title: &str,
    axis: &str,
    categories: &[String],
    series: &[String],
    values: &[Vec<Bar>],
) -> String {
    let (left, width, top) = (190.0, 560.0, 60.0 + 18.0 * series.len() as f64);
    let bar_h = 12.0;
    let group_h = bar_h * series.len() as f64 + 10.0;
    let height = top + group_h * categories.len() as f64 + 50.0;
    let max = values
        .iter()
        .flatten()
        .flatten()
        .map(|(v, w)| w.unwrap_or(*v).max(*v))
        .fold(0.0, f64::max);
    let ts = ticks(max);
    let scale = width / ts.last().copied().unwrap_or(1.0).max(1e-12);
    let names: Vec<&str> = series.iter().map(String::as_str).collect();
    let mut s = head(left + width + 40.0, height, title, left, &names);
    let bottom = top + group_h * categories.len() as f64;
    for t in &ts {
        let x = left + t * scale;
        let _ = writeln!(
            s,
            r##"<line x1="{x}" y1="{top}" x2="{x}" y2="{bottom}" stroke="#ddd"/><text x="{x}" y="{}" text-anchor="middle">{}</text>"##,
            bottom + 16.0,
            fmt_num(*t)
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
        left + width / 2.0,
        bottom + 36.0,
        esc(axis)
    );
    for (ci, cat) in categories.iter().enumerate() {
        let gy = top + group_h * ci as f64;
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#,
            left - 8.0,
            gy + group_h / 2.0,
            esc(cat)
        );
        for (si, v) in values.get(ci).into_iter().flatten().enumerate() {
            let Some((v, whisker)) = v else { continue };
            let y = gy + 5.0 + bar_h * si as f64;
            let _ = writeln!(
                s,
                r#"<rect x="{left}" y="{y}" width="{:.1}" height="{}" fill="{}"><title>{} {}: {}</title></rect>"#,
                (v * scale).max(0.5),
                bar_h - 2.0,
                COLOURS[si % COLOURS.len()],
                esc(cat),
                esc(&series[si]),
                fmt_num(*v)
            );
            if let Some(w) = whisker {
                let (x0, x1, ym) = (left + v * scale, left + w * scale, y + (bar_h - 2.0) / 2.0);
                let _ = writeln!(
                    s,
                    r##"<line x1="{x0:.1}" y1="{ym}" x2="{x1:.1}" y2="{ym}" stroke="#333"/><line x1="{x1:.1}" y1="{}" x2="{x1:.1}" y2="{}" stroke="#333"/>"##,
                    ym - 3.0,
                    ym + 3.0
                );
            }
        }
    }
    s.push_str("</svg>\n");
    s
}

/// One line: points (x, y, y low, y high).
pub struct Line {
    pub name: String,
    pub points: Vec<(f64, f64, f64, f64)>,
}

/// Lines over a log10 x axis (e.g. number of Services), with min-max whiskers.
#[must_use]
#[expect(clippy::many_single_char_names, reason = "chart coordinates")]
pub fn lines(title: &str, x_axis: &str, y_axis: &str, series: &[Line]) -> String {
    let (left, width, top, height) = (80.0, 560.0, 40.0 + 18.0 * series.len() as f64, 320.0);
    let xs: Vec<f64> = series
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.0.max(1.0)))
        .collect();
    let (xmin, xmax) = (
        xs.iter()
            .copied()
            .fold(f64::INFINITY, f64::min)
            .log10()
            .floor(),
        xs.iter()
            .copied()
            .fold(1.0, f64::max)
            .log10()
            .ceil()
            .max(1.0),
    );
    let xmin = if xmin.is_finite() {
        xmin.min(xmax - 1.0)
    } else {
        0.0
    };
    let ymax = series
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.3.max(p.1)))
        .fold(0.0, f64::max);
    let ts = ticks(ymax);
    let ytop = ts.last().copied().unwrap_or(1.0).max(1e-12);
    let px = |x: f64| left + (x.max(1.0).log10() - xmin) / (xmax - xmin) * width;
    let py = |y: f64| top + height - y / ytop * height;
    let names: Vec<&str> = series.iter().map(|l| l.name.as_str()).collect();
    let mut s = head(
        left + width + 40.0,
        top + height + 60.0,
        title,
        left,
        &names,
    );
    for t in &ts {
        let y = py(*t);
        let _ = writeln!(
            s,
            r##"<line x1="{left}" y1="{y:.1}" x2="{}" y2="{y:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
            left + width,
            left - 6.0,
            y + 4.0,
            fmt_num(*t)
        );
    }
    let mut e = xmin;
    while e <= xmax + 1e-9 {
        let x = px(10f64.powf(e));
        let _ = writeln!(
            s,
            r##"<line x1="{x:.1}" y1="{top}" x2="{x:.1}" y2="{}" stroke="#ddd"/><text x="{x:.1}" y="{}" text-anchor="middle">{}</text>"##,
            top + height,
            top + height + 16.0,
            fmt_num(10f64.powf(e))
        );
        e += 1.0;
    }
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">{}</text><text x="16" y="{}" transform="rotate(-90 16 {})" text-anchor="middle">{}</text>"#,
        left + width / 2.0,
        top + height + 40.0,
        esc(x_axis),
        top + height / 2.0,
        top + height / 2.0,
        esc(y_axis)
    );
    for (i, l) in series.iter().enumerate() {
        let c = COLOURS[i % COLOURS.len()];
        let pts: Vec<String> = l
            .points
            .iter()
            .map(|p| format!("{:.1},{:.1}", px(p.0), py(p.1)))
            .collect();
        let _ = writeln!(
            s,
            r#"<polyline points="{}" fill="none" stroke="{c}" stroke-width="2"/>"#,
            pts.join(" ")
        );
        for p in &l.points {
            let (x, y) = (px(p.0), py(p.1));
            let _ = writeln!(
                s,
                r#"<line x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{:.1}" stroke="{c}"/><circle cx="{x:.1}" cy="{y:.1}" r="4" fill="{c}"><title>{}: {} at {}</title></circle><text x="{:.1}" y="{:.1}" font-size="11">{}</text>"#,
                py(p.2),
                py(p.3),
                esc(&l.name),
                fmt_num(p.1),
                fmt_num(p.0),
                x + 6.0,
                y - 6.0,
                fmt_num(p.1)
            );
        }
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_cover_the_maximum() {
        assert_eq!(ticks(47.0), vec![0.0, 10.0, 20.0, 30.0, 40.0, 50.0]);
        let t = ticks(0.37);
        assert!(*t.last().unwrap() >= 0.37 && t.len() <= 7, "{t:?}");
    }

    #[test]
    fn charts_are_well_formed_and_escape_text() {
        let b = bars(
            "a < b",
            "us",
            &["host".into(), "bridge".into()],
            &["rr".into(), "udp-rr".into()],
            &[
                vec![Some((10.0, Some(20.0))), None],
                vec![Some((12.0, None)), Some((9.0, Some(11.0)))],
            ],
        );
        assert!(b.starts_with("<svg") && b.trim_end().ends_with("</svg>"));
        assert!(b.contains("a &lt; b") && b.matches("<rect x=\"190\"").count() >= 3);
        let l = lines(
            "setup",
            "Services",
            "us",
            &[Line {
                name: "iptables".into(),
                points: vec![(1.0, 30.0, 28.0, 33.0), (10_000.0, 90.0, 80.0, 95.0)],
            }],
        );
        assert!(l.contains("<polyline") && l.contains(">10000<"), "{l}");
    }
}
