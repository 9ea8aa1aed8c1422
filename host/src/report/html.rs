//! A [`JobReport`] as one self-contained HTML page: inline CSS and SVG, no scripts, nothing
//! fetched from the network.

use std::fmt::Write;

use super::{JobReport, TimeShares};
use crate::queue::store::records::Outcome;

const WIDTH: f64 = 960.0;
const LEFT: f64 = 170.0;
const ROW: f64 = 18.0;
const BAR: f64 = 160.0;

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;max-width:1000px}\
h1{font-size:20px}h2{font-size:16px;margin-top:28px}table{border-collapse:collapse}\
td,th{padding:3px 10px;border-bottom:1px solid #ddd;text-align:right}th:first-child,td:first-child{text-align:left;white-space:nowrap}\
.fetch{fill:#9ecae1}.kernel{fill:#3182bd}.store{fill:#fdae6b}.idle{fill:#ddd}.failed{fill:#de2d26}\
.key span{display:inline-block;width:12px;height:12px;margin:0 4px 0 12px;vertical-align:middle}\
code{font-size:12px}.warn{color:#a50}";

/// Escapes text for HTML.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The page.
pub fn page(r: &JobReport) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>crunch job {job}</title><style>{STYLE}</style></head><body>",
        job = esc(&r.job)
    );
    let _ = write!(
        out,
        "<h1>Job <code>{}</code>: {}</h1><p>kernel <b>{}</b>; {} of {} items ok, {} failed; {} of {} batches done, {} dead-lettered, {} claims taken over; {:.2} s from the first claim to the last result, {:.0} items/s.</p>",
        esc(&r.job),
        r.state,
        esc(&r.kernel),
        r.items_ok,
        r.items,
        r.items_failed,
        r.batches_done,
        r.batch_count,
        r.batches_dead,
        r.reclaims,
        r.wall_s,
        r.items_per_s
    );
    if let Some(e) = &r.error {
        let _ = write!(out, "<p class=\"warn\">error: {}</p>", esc(e));
    }
    plan_table(&mut out, r);
    out.push_str("<h2>Batches per worker</h2>");
    key(&mut out);
    timeline(&mut out, r);
    out.push_str("<h2>Throughput</h2>");
    throughput(&mut out, r);
    out.push_str("<h2>Where the time went</h2>");
    time_table(&mut out, r);
    failures(&mut out, r);
    out.push_str("</body></html>\n");
    out
}

fn key(out: &mut String) {
    out.push_str("<p class=\"key\">");
    for (class, label) in [
        ("fetch", "fetch (claim, load the pack, read input)"),
        ("kernel", "kernel"),
        ("store", "store results"),
        ("idle", "idle"),
        ("failed", "failed, retried or dead-lettered"),
    ] {
        let _ = write!(
            out,
            "<span><svg width=\"12\" height=\"12\"><rect class=\"{class}\" width=\"12\" height=\"12\"/></svg></span>{label}"
        );
    }
    out.push_str("</p>");
}

fn plan_table(out: &mut String, r: &JobReport) {
    out.push_str("<h2>The plan beside what happened</h2><table><tr><th></th><th>planned</th><th>happened</th></tr>");
    let planned = r.plan.as_ref().map(|p| &p.estimate);
    let cell = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    let rows: [(&str, Option<String>, String); 6] = [
        (
            "deployment",
            planned.map(|e| esc(&e.deployment)),
            format!("{} loop(s)", r.workers.len()),
        ),
        (
            "items per batch",
            planned.map(|e| e.batch_size.to_string()),
            r.batch_size.to_string(),
        ),
        (
            "batches",
            planned.map(|e| e.batches.to_string()),
            r.batch_count.to_string(),
        ),
        (
            "kernel time of a full batch (ms)",
            planned.map(|e| format!("{:.1}", e.batch_s * 1e3)),
            format!("{:.1}", r.mean_batch_kernel_ms),
        ),
        (
            "wall time (s)",
            planned.map(|e| format!("{:.2}", e.wall_s)),
            format!("{:.2}", r.wall_s),
        ),
        (
            "items/s",
            planned.map(|e| format!("{:.0}", e.items_per_s)),
            format!("{:.0}", r.items_per_s),
        ),
    ];
    for (name, plan, real) in rows {
        let _ = write!(
            out,
            "<tr><td>{name}</td><td>{}</td><td>{real}</td></tr>",
            cell(plan)
        );
    }
    out.push_str("</table>");
    if r.plan.is_none() {
        out.push_str("<p>The job was submitted with a fixed batch size: no plan to compare.</p>");
    }
}

fn timeline(out: &mut String, r: &JobReport) {
    let Some(start) = r.started_ms else {
        out.push_str("<p>No batch has run yet.</p>");
        return;
    };
    let span_ms = (r.wall_s * 1e3).max(1.0);
    let x = |ms: f64| LEFT + (ms / span_ms).clamp(0.0, 1.0) * (WIDTH - LEFT - 10.0);
    let height = ROW * r.workers.len() as f64 + 24.0;
    let _ = write!(
        out,
        "<svg width=\"{WIDTH}\" height=\"{height}\" role=\"img\" aria-label=\"timeline of batches per worker\">"
    );
    for (row, w) in r.workers.iter().enumerate() {
        let y = row as f64 * ROW;
        let _ = write!(
            out,
            "<text x=\"0\" y=\"{}\" font-size=\"11\">{}</text>",
            y + 13.0,
            esc(&short(&w.worker))
        );
        for rec in r.records.iter().filter(|rec| rec.worker == w.worker) {
            let at = |ms: u64| ms.saturating_sub(start) as f64;
            let claimed = at(rec.claimed_ms);
            let kernel_start = at(rec.started_ms);
            let kernel_end = kernel_start + rec.kernel_ms;
            let finished = at(rec.finished_ms).max(kernel_end);
            let kernel_class = if rec.outcome == Outcome::Done && rec.items_failed == 0 {
                "kernel"
            } else {
                "failed"
            };
            let segments = [
                ("fetch", claimed, claimed + rec.fetch_ms),
                (kernel_class, kernel_start, kernel_end),
                ("store", kernel_end, finished),
            ];
            for (class, a, b) in segments {
                let (xa, xb) = (x(a), x(b));
                let _ = write!(
                    out,
                    "<rect class=\"{class}\" x=\"{xa:.1}\" y=\"{:.1}\" width=\"{:.2}\" height=\"{:.1}\"><title>batch {} ({}), delivery {}: {class} {:.1} ms</title></rect>",
                    y + if class == "kernel" || class == "failed" {
                        2.0
                    } else {
                        6.0
                    },
                    (xb - xa).max(0.5),
                    if class == "kernel" || class == "failed" {
                        ROW - 4.0
                    } else {
                        ROW - 12.0
                    },
                    rec.batch,
                    rec.outcome.as_str(),
                    rec.deliveries,
                    b - a
                );
            }
        }
    }
    axis(out, height - 20.0, r.wall_s);
    out.push_str("</svg>");
}

/// A time axis in seconds at `y`.
fn axis(out: &mut String, y: f64, wall_s: f64) {
    let _ = write!(
        out,
        "<line x1=\"{LEFT}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\" stroke=\"#888\"/>",
        WIDTH - 10.0
    );
    for i in 0..=5 {
        let t = wall_s * i as f64 / 5.0;
        let xt = LEFT + (WIDTH - LEFT - 10.0) * i as f64 / 5.0;
        let _ = write!(
            out,
            "<text x=\"{xt:.1}\" y=\"{}\" font-size=\"11\" text-anchor=\"middle\">{t:.2} s</text>",
            y + 14.0
        );
    }
}

fn throughput(out: &mut String, r: &JobReport) {
    if r.throughput.is_empty() {
        out.push_str("<p>No batch has finished yet.</p>");
        return;
    }
    let (height, plot) = (180.0, 150.0);
    let peak = r.throughput.iter().map(|p| p.1).fold(1.0, f64::max);
    let x = |t: f64| LEFT + (t / r.wall_s.max(1e-9)).clamp(0.0, 1.0) * (WIDTH - LEFT - 10.0);
    let y = |v: f64| plot - v / peak * (plot - 10.0);
    let points: Vec<String> = r
        .throughput
        .iter()
        .map(|&(t, v)| format!("{:.1},{:.1}", x(t), y(v)))
        .collect();
    let _ = write!(
        out,
        "<svg width=\"{WIDTH}\" height=\"{height}\" role=\"img\" aria-label=\"items per second over time\">\
<text x=\"0\" y=\"14\" font-size=\"11\">{peak:.0} items/s</text><text x=\"0\" y=\"{plot}\" font-size=\"11\">0</text>\
<polyline fill=\"none\" stroke=\"#3182bd\" stroke-width=\"2\" points=\"{}\"/>",
        points.join(" ")
    );
    axis(out, plot, r.wall_s);
    out.push_str("</svg>");
}

fn bar(out: &mut String, t: &TimeShares) {
    let total = (t.fetch_ms + t.kernel_ms + t.store_ms + t.idle_ms).max(1e-9);
    let _ = write!(out, "<svg width=\"{BAR}\" height=\"16\">");
    let mut at = 0.0;
    for (class, ms) in [
        ("kernel", t.kernel_ms),
        ("fetch", t.fetch_ms),
        ("store", t.store_ms),
        ("idle", t.idle_ms),
    ] {
        let w = ms / total * BAR;
        let _ = write!(
            out,
            "<rect class=\"{class}\" x=\"{at:.1}\" y=\"0\" width=\"{w:.1}\" height=\"16\"><title>{class} {:.0}%</title></rect>",
            ms / total * 100.0
        );
        at += w;
    }
    out.push_str("</svg>");
}

fn time_table(out: &mut String, r: &JobReport) {
    out.push_str("<p>Each claim loop's share of the job's wall time: in kernels, waiting for the next batch's input, waiting for the last batch's results to be stored, idle. A loop claims and reads the next batch and stores the last one on helper threads while its kernel runs; the last two columns are those threads' whole work.</p>");
    out.push_str("<table><tr><th>loop</th><th>runs</th><th>items ok</th><th>failed</th><th>kernel ms</th><th>input ms</th><th>store ms</th><th>idle ms</th><th></th><th>fetching ms</th><th>storing ms</th></tr>");
    let mut row = |name: &str,
                   runs: u64,
                   (ok, failed): (u64, u64),
                   t: &TimeShares,
                   busy: (f64, f64)| {
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{runs}</td><td>{ok}</td><td>{failed}</td><td>{:.0}</td><td>{:.0}</td><td>{:.0}</td><td>{:.0}</td><td>",
            esc(name),
            t.kernel_ms,
            t.fetch_ms,
            t.store_ms,
            t.idle_ms
        );
        bar(out, t);
        let _ = write!(
            out,
            "</td><td>{:.0}</td><td>{:.0}</td></tr>",
            busy.0, busy.1
        );
    };
    for w in &r.workers {
        let busy = (w.fetch_busy_ms, w.store_busy_ms);
        row(
            &short(&w.worker),
            w.runs,
            (w.items_ok, w.items_failed),
            &w.time,
            busy,
        );
    }
    let busy = r.workers.iter().fold((0.0, 0.0), |(f, s), w| {
        (f + w.fetch_busy_ms, s + w.store_busy_ms)
    });
    row(
        "all loops",
        r.recorded.runs,
        (r.recorded.items_ok, r.recorded.items_failed),
        &r.time,
        busy,
    );
    out.push_str("</table>");
}

fn failures(out: &mut String, r: &JobReport) {
    let _ = write!(
        out,
        "<h2>Failures</h2><p>{} items failed; {} batches dead-lettered.</p>",
        r.failed_item_count,
        r.dead_letters.len()
    );
    if !r.dead_letters.is_empty() {
        out.push_str("<table><tr><th>dead batch</th><th>deliveries</th><th>error</th></tr>");
        for d in &r.dead_letters {
            let first = d.error.lines().next().unwrap_or_default();
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{}</td><td style=\"text-align:left\">{}</td></tr>",
                d.batch,
                d.deliveries,
                esc(first)
            );
        }
        out.push_str("</table>");
    }
    if !r.failed_items.is_empty() {
        out.push_str("<table><tr><th>item</th><th>kind</th><th>message</th></tr>");
        for f in &r.failed_items {
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{}</td><td style=\"text-align:left\">{}</td></tr>",
                f.item,
                esc(&f.kind),
                esc(&f.message)
            );
        }
        out.push_str("</table>");
        if r.failed_item_count > r.failed_items.len() {
            let _ = write!(
                out,
                "<p>and {} more (see <code>crunch results</code>).</p>",
                r.failed_item_count - r.failed_items.len()
            );
        }
    }
}

/// A consumer name cut to its end (host-pid-random-loop), which tells loops apart.
fn short(worker: &str) -> String {
    let chars: Vec<char> = worker.chars().collect();
    match chars.len() {
        n if n > 26 => format!("…{}", chars[n - 25..].iter().collect::<String>()),
        _ => worker.to_string(),
    }
}
