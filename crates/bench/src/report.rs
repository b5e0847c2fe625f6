//! The comparison table: every figure for both registries, the ratio Stowage/distribution, and
//! whether the target of the performance issue is met.

use std::fmt::Write;

use crate::Figures;
use crate::ceilings::Ceilings;

/// How a row's target is judged.
#[derive(Clone, Copy)]
pub enum Target {
    /// Ratio Stowage/distribution at least this.
    RatioAtLeast(f64),
    /// Ratio Stowage/distribution at most this.
    RatioAtMost(f64),
    /// No target: reported for context.
    None,
}

/// (key, label, unit, target)
pub const ROWS: &[(&str, &str, &str, Target)] = &[
    (
        "push_mono_mbps",
        "push big blob, monolithic",
        "MB/s",
        Target::RatioAtLeast(1.25),
    ),
    (
        "push_chunked_mbps",
        "push big blob, 16 MiB chunks",
        "MB/s",
        Target::None,
    ),
    (
        "pull_mbps",
        "pull big blob",
        "MB/s",
        Target::RatioAtLeast(1.3),
    ),
    (
        "small_push_per_s",
        "4 KiB blob pushes, 16 pushers",
        "blobs/s",
        Target::RatioAtLeast(5.0),
    ),
    ("small_push_p50_ms", "  p50", "ms", Target::None),
    ("small_push_p99_ms", "  p99", "ms", Target::None),
    (
        "manifest_put_per_s",
        "manifest PUT, distinct tags",
        "manifests/s",
        Target::RatioAtLeast(2.0),
    ),
    (
        "manifest_head_per_s",
        "manifest HEAD by tag, 64 conns",
        "req/s",
        Target::RatioAtLeast(4.0),
    ),
    ("manifest_head_p50_ms", "  p50", "ms", Target::None),
    ("manifest_head_p99_ms", "  p99", "ms", Target::None),
    (
        "manifest_get_per_s",
        "manifest GET by tag, 64 conns",
        "req/s",
        Target::RatioAtLeast(4.0),
    ),
    ("manifest_get_p50_ms", "  p50", "ms", Target::None),
    ("manifest_get_p99_ms", "  p99", "ms", Target::None),
    (
        "blob_head_per_s",
        "blob HEAD, 64 conns",
        "req/s",
        Target::RatioAtLeast(4.0),
    ),
    ("blob_head_p50_ms", "  p50", "ms", Target::None),
    ("blob_head_p99_ms", "  p99", "ms", Target::None),
    (
        "tag_list_ms",
        "full tag list, unpaged",
        "ms",
        Target::RatioAtMost(0.5),
    ),
    (
        "cpu_s_per_gib_push",
        "server CPU per GiB pushed",
        "s",
        Target::None,
    ),
    (
        "cpu_s_per_gib_pull",
        "server CPU per GiB pulled",
        "s",
        Target::None,
    ),
    ("mem_idle_mib", "server RSS at idle", "MiB", Target::None),
    (
        "mem_peak_mib",
        "server peak RSS, whole run",
        "MiB",
        Target::RatioAtMost(0.6),
    ),
];

fn fmt(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// Render the table (Markdown, so it pastes into docs/BENCHMARKS.md as is).
pub fn table(s: &Figures, d: Option<&Figures>, ceil: &Ceilings) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| figure | unit | stowage | distribution | stowage/distribution | target |"
    );
    let _ = writeln!(out, "|---|---|---:|---:|---:|---|");
    for (key, label, unit, target) in ROWS {
        let sv = s.get(key).copied();
        let dv = d.and_then(|d| d.get(key).copied());
        let ratio = match (sv, dv) {
            (Some(a), Some(b)) if b > 0.0 => Some(a / b),
            _ => None,
        };
        let verdict = match (target, ratio) {
            (Target::RatioAtLeast(t), Some(r)) => {
                format!(">= {t}x: {}", if r >= *t { "met" } else { "MISSED" })
            }
            (Target::RatioAtMost(t), Some(r)) => {
                format!("<= {t}x: {}", if r <= *t { "met" } else { "MISSED" })
            }
            _ => String::new(),
        };
        let _ = writeln!(
            out,
            "| {label} | {unit} | {} | {} | {} | {verdict} |",
            sv.map(fmt).unwrap_or_default(),
            dv.map(fmt).unwrap_or_default(),
            ratio.map(|r| format!("{r:.2}")).unwrap_or_default()
        );
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "Machine ceilings (same run):");
    let _ = writeln!(
        out,
        "- SHA-256 (Stowage's hasher), one core: {} MB/s, {} CPU s per GiB",
        fmt(ceil.sha256_mbps),
        fmt(ceil.sha256_cpu_s_per_gib)
    );
    let _ = writeln!(out, "- loopback TCP: {} MB/s", fmt(ceil.loopback_mbps));
    let frac = |k: &str, of: f64| {
        s.get(k)
            .map(|v| format!("{:.0}%", 100.0 * v / of))
            .unwrap_or_default()
    };
    let _ = writeln!(
        out,
        "- Stowage push monolithic = {} of the SHA-256 ceiling (target >= 80%); chunked = {} (target >= 75%)",
        frac("push_mono_mbps", ceil.sha256_mbps),
        frac("push_chunked_mbps", ceil.sha256_mbps)
    );
    let _ = writeln!(
        out,
        "- Stowage pull = {} of loopback TCP (target >= 50%)",
        frac("pull_mbps", ceil.loopback_mbps)
    );
    if let Some(cpu) = s.get("cpu_s_per_gib_push") {
        let _ = writeln!(
            out,
            "- Stowage CPU per GiB pushed = {:.2}x the hasher's own (target <= 1.25x)",
            cpu / ceil.sha256_cpu_s_per_gib
        );
    }
    out
}

/// The Stowage-only scale checks, with their targets.
pub fn scale_table(f: &crate::scale::ScaleFigures, idle_mib: f64) -> String {
    let ok = |b: bool| if b { "met" } else { "MISSED" };
    let mut out = String::new();
    let _ = writeln!(out, "| scale check (Stowage) | measured | target |");
    let _ = writeln!(out, "|---|---:|---|");
    let _ = writeln!(
        out,
        "| peak RSS while receiving a {:.1} GiB layer | {:.1} MiB | < 100 MiB: {} |",
        f.huge_gib,
        f.huge_peak_mib,
        ok(f.huge_peak_mib < 100.0)
    );
    let _ = writeln!(
        out,
        "| RSS at idle | {idle_mib:.1} MiB | < 30 MiB: {} |",
        ok(idle_mib < 30.0)
    );
    let _ = writeln!(
        out,
        "| ready after restart with {} blobs and {} tags | {:.0} ms | < 200 ms: {} |",
        f.blobs,
        f.tags,
        f.ready_ms,
        ok(f.ready_ms < 200.0)
    );
    let _ = writeln!(
        out,
        "| {} concurrent {:.2} GiB pushes: server CPU s per wall s | {:.2} ({:.0} MB/s total) | more than one core (> 1.2, client on the same 2 cores): {} |",
        f.parallel,
        f.parallel_gib,
        f.parallel_cores,
        f.parallel_mbps,
        ok(f.parallel_cores > 1.2)
    );
    out
}
