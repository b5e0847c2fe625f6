//! `stowage-bench soak`: a long mixed run against one Stowage server with authentication and
//! HTTPS, for leaks and for durability across crashes (see docs/RELIABILITY.md, "Soak").
//!
//! `clients` soak clients (64 by default) push, pull, list and delete at once for `minutes`.
//! Every 10 s the server's resident memory, open file descriptors, threads and CPU time are read
//! from `/proc` (with the machine's load) into `samples.csv`. With `restart_every`, the server
//! is killed with SIGKILL and started again on the same data directory at that interval.
//!
//! At the end: the resource drift between one third of the run (minute 10 of 30) and its end,
//! the error counts, and, after the clients stop, every acknowledged push still in the ledgers
//! is pulled back by digest and by tag with every digest checked; then the server is stopped
//! cleanly and `stowage fsck --deep` runs on its data directory. The verdict and figures go to
//! `summary.txt` in the output directory, and the exit status says whether the soak passed.

pub mod clients;
pub mod server;

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use clients::{Counters, Target};
use server::{SoakServer, Usage};

/// What a soak does.
#[derive(Debug, Clone)]
pub struct SoakArgs {
    pub minutes: f64,
    pub clients: usize,
    /// Kill -9 and restart the server this often (None: never).
    pub restart_every: Option<Duration>,
    /// Each client pauses up to this long (uniformly) between operations.
    pub pause: Duration,
    pub stowage_bin: PathBuf,
    /// Where the data directory, logs, samples and summary go.
    pub out: PathBuf,
}

/// Parse `soak` arguments.
pub fn parse_args(args: &[String], default_bin: PathBuf) -> Result<SoakArgs> {
    let mut a = SoakArgs {
        minutes: 30.0,
        clients: 64,
        restart_every: None,
        pause: Duration::from_millis(50),
        stowage_bin: default_bin,
        out: PathBuf::from("soak-out"),
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = |what: &str| it.next().with_context(|| format!("{arg} needs {what}"));
        match arg.as_str() {
            "--minutes" => a.minutes = value("a number")?.parse()?,
            "--clients" => a.clients = value("a number")?.parse()?,
            "--restart-every" => {
                let secs: f64 = value("seconds")?.parse()?;
                a.restart_every = Some(Duration::from_secs_f64(secs));
            }
            "--pause-ms" => a.pause = Duration::from_millis(value("milliseconds")?.parse()?),
            "--stowage-bin" => a.stowage_bin = value("a path")?.into(),
            "--out" => a.out = value("a directory")?.into(),
            "-h" | "--help" => {
                println!(
                    "usage: stowage-bench soak [--minutes 30] [--clients 64] [--restart-every SECONDS] [--pause-ms 50] [--stowage-bin PATH] [--out DIR]"
                );
                std::process::exit(0);
            }
            other => bail!("unknown soak argument {other:?} (see soak --help)"),
        }
    }
    if a.minutes <= 0.0 || a.clients == 0 {
        bail!("--minutes and --clients must be positive");
    }
    Ok(a)
}

/// One row of `samples.csv`.
#[derive(Debug, Clone, Copy)]
struct Sample {
    t_s: f64,
    usage: Usage,
    ops: u64,
    load1: f64,
}

/// Users the clients log in as (clients are spread over them).
const USERS: usize = 4;

/// Run a soak; returns whether it passed (the summary says why not).
pub async fn run(a: SoakArgs) -> Result<bool> {
    let data = a.out.join("data");
    if data.exists() {
        bail!("{} exists: give a new --out directory", data.display());
    }
    std::fs::create_dir_all(&a.out)?;
    let log = a.out.join("server.log");
    let mut srv = SoakServer::new(&a.stowage_bin, &data, &log)?;
    let mut targets = Vec::new();
    for u in 0..USERS {
        let (user, password) = (format!("soak{u}"), format!("soak-password-{u}"));
        srv.add_user(&user, &password, &["soak/**:pull,push,delete"])?;
        targets.push((user, password));
    }
    srv.start()?;
    let ca_pem = std::fs::read(srv.ca_file()).context("the development CA")?;
    let url = srv.url();
    let target = |i: usize| Target {
        url: url.clone(),
        ca_pem: ca_pem.clone(),
        user: targets[i % USERS].0.clone(),
        password: targets[i % USERS].1.clone(),
    };
    eprintln!(
        "soak: {} clients for {} min against {} (auth, HTTPS){}; output in {}",
        a.clients,
        a.minutes,
        srv.url(),
        a.restart_every.map_or(String::new(), |d| format!(
            ", kill -9 every {} s",
            d.as_secs()
        )),
        a.out.display()
    );

    let counters = Arc::new(Counters::new());
    let mut tasks = Vec::new();
    for i in 0..a.clients {
        tasks.push(tokio::spawn(clients::run(
            i,
            target(i),
            counters.clone(),
            a.pause,
        )));
    }

    let total = Duration::from_secs_f64(a.minutes * 60.0);
    let start = Instant::now();
    let mut samples_csv = std::fs::File::create(a.out.join("samples.csv"))?;
    writeln!(
        samples_csv,
        "t_s,rss_kib,fds,threads,cpu_s,ops,interrupted,unexpected,integrity,load1"
    )?;
    let mut samples: Vec<Sample> = Vec::new();
    let mut restarts = 0u32;
    let mut next_restart = a.restart_every.map(|d| start + d);
    let mut next_sample = start;
    while start.elapsed() < total {
        if next_restart.is_some_and(|at| Instant::now() >= at) {
            counters.killing();
            srv.kill9()?;
            srv.start()?;
            counters.restarted();
            restarts += 1;
            eprintln!(
                "soak: {:.1} min: killed -9 and restarted ({restarts})",
                start.elapsed().as_secs_f64() / 60.0
            );
            next_restart = a.restart_every.map(|d| Instant::now() + d);
        }
        if Instant::now() >= next_sample {
            if let Some(usage) = srv.usage() {
                let s = Sample {
                    t_s: start.elapsed().as_secs_f64(),
                    usage,
                    ops: counters.ops(),
                    load1: server::load1(),
                };
                writeln!(
                    samples_csv,
                    "{:.0},{},{},{},{:.1},{},{},{},{},{:.2}",
                    s.t_s,
                    usage.rss_kib,
                    usage.fds,
                    usage.threads,
                    usage.cpu_s,
                    s.ops,
                    counters.interrupted.load(Ordering::Relaxed),
                    counters.unexpected.load(Ordering::Relaxed),
                    counters.integrity.load(Ordering::Relaxed),
                    s.load1
                )?;
                samples_csv.flush()?;
                if samples.len().is_multiple_of(6) {
                    eprintln!(
                        "soak: {:.1} min: {} ops, RSS {:.1} MiB, {} fds, load {:.2}, unexpected {}, interrupted {}",
                        s.t_s / 60.0,
                        s.ops,
                        usage.rss_kib as f64 / 1024.0,
                        usage.fds,
                        s.load1,
                        counters.unexpected.load(Ordering::Relaxed),
                        counters.interrupted.load(Ordering::Relaxed)
                    );
                }
                samples.push(s);
            }
            next_sample += Duration::from_secs(10);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    counters.stop.store(true, Ordering::Relaxed);
    let mut ledger = Vec::new();
    for t in tasks {
        ledger.extend(t.await??);
    }
    let elapsed = start.elapsed().as_secs_f64();
    clients::write_ledger(&a.out.join("acknowledged.txt"), &ledger)?;
    eprintln!("soak: verifying {} acknowledged pushes", ledger.len());
    let (checked, failures) = clients::verify_all(&target(0), &ledger).await?;
    srv.stop()?;
    let fsck = srv.fsck_deep()?;
    let (server_errors, too_many) = server::logged_statuses(&log);

    let mut report = Report::default();
    let get = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    report.line(format!(
        "soak: {} clients, {:.1} min, auth + HTTPS (h2 and HTTP/1.1), kill -9 restarts: {restarts}",
        a.clients,
        elapsed / 60.0
    ));
    report.line(format!(
        "operations: {} ({:.0}/s): pushes {}, pulls {}, lists {}, deletes {}",
        counters.ops(),
        counters.ops() as f64 / elapsed,
        get(&counters.pushes),
        get(&counters.pulls),
        get(&counters.lists),
        get(&counters.deletes)
    ));
    let unexpected = get(&counters.unexpected);
    let integrity = get(&counters.integrity);
    report.check(
        unexpected == 0 && integrity == 0,
        format!(
            "errors: unexpected {unexpected}, integrity {integrity}, interrupted by kills {}",
            get(&counters.interrupted)
        ),
    );
    report.line(format!(
        "server log: {server_errors} responses >= 500, {too_many} responses 429"
    ));
    if a.restart_every.is_none() {
        report.check(
            server_errors == 0,
            format!("no 5xx in the server log ({server_errors})"),
        );
        drift(&mut report, &samples, elapsed);
    }
    report.check(
        failures.is_empty(),
        format!(
            "acknowledged pushes verified by pulling (manifest by digest and tag, every blob digest): {checked}, failed {}",
            failures.len()
        ),
    );
    for f in failures.iter().take(20) {
        report.line(format!("  {f}"));
    }
    match fsck {
        None if a.restart_every.is_none() => {
            report.line("fsck --deep: not run (this build has no fsck command)".into())
        }
        None => report.check(
            false,
            format!(
                "fsck --deep: this build has no fsck command; run `stowage fsck --deep --data {}` with one",
                data.display()
            ),
        ),
        Some((code, out)) => {
            report.check(code == 0, format!("fsck --deep exit status {code}"));
            std::fs::write(a.out.join("fsck.txt"), out)?;
        }
    }
    let loads: Vec<f64> = samples.iter().map(|s| s.load1).collect();
    if !loads.is_empty() {
        report.line(format!(
            "machine load (1-min average, 2 cores shared): mean {:.2}, max {:.2}",
            loads.iter().sum::<f64>() / loads.len() as f64,
            loads.iter().copied().fold(0.0, f64::max)
        ));
    }
    let text = report.finish();
    std::fs::write(a.out.join("summary.txt"), &text)?;
    print!("{text}");
    Ok(report.passed)
}

/// Resident memory and open descriptors at one third of the run (minute 10 of 30: the mean of
/// the samples within 30 s of it) against the last minute (mean): within 10%.
fn drift(report: &mut Report, samples: &[Sample], elapsed: f64) {
    let mean = |from: f64, to: f64, f: &dyn Fn(&Sample) -> f64| {
        let v: Vec<f64> = samples
            .iter()
            .filter(|s| s.t_s >= from && s.t_s <= to)
            .map(f)
            .collect();
        (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
    };
    let third = elapsed / 3.0;
    let rss = |s: &Sample| s.usage.rss_kib as f64 / 1024.0;
    let fds = |s: &Sample| s.usage.fds as f64;
    for (what, f, unit) in [
        ("resident memory", &rss as &dyn Fn(&Sample) -> f64, "MiB"),
        ("open fds", &fds, ""),
    ] {
        let early = mean(third - 30.0, third + 30.0, f);
        let late = mean(elapsed - 60.0, elapsed, f);
        match (early, late) {
            (Some(e), Some(l)) => {
                let change = (l - e) / e * 100.0;
                let peak = samples.iter().map(f).fold(0.0, f64::max);
                report.check(
                    change.abs() <= 10.0,
                    format!(
                        "{what}: {e:.1}{unit} at minute {:.1}, {l:.1}{unit} in the last minute ({change:+.1}%), peak {peak:.1}{unit}",
                        third / 60.0
                    ),
                );
            }
            _ => report.check(false, format!("{what}: too few samples")),
        }
    }
}

/// The summary: lines, some of them checks.
#[derive(Default)]
struct Report {
    lines: Vec<String>,
    failed: usize,
    passed: bool,
}

impl Report {
    fn line(&mut self, l: String) {
        self.lines.push(l);
    }

    fn check(&mut self, ok: bool, l: String) {
        if !ok {
            self.failed += 1;
        }
        self.lines
            .push(format!("{} {l}", if ok { "PASS" } else { "FAIL" }));
    }

    fn finish(&mut self) -> String {
        self.passed = self.failed == 0;
        let mut out = self.lines.join("\n");
        out.push_str(&format!(
            "\nverdict: {}\n",
            if self.passed { "PASS" } else { "FAIL" }
        ));
        out
    }
}
