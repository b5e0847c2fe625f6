//! `stowage-bench [--quick] [--no-scale] [--auth] [--stowage-bin PATH] [--distribution-bin PATH] [--only stowage]`
//! (or `stowage-bench soak ...`, the long run of `bench/soak`, see `soak`):
//! measure the machine's ceilings, run every workload against Stowage (with `--auth`: token
//! authentication on, every request carrying a bearer JWT) and then against CNCF
//! distribution, and print the comparison table. `bench/run` installs what is missing, builds
//! in release mode and calls this.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use stowage_bench::procs::Registry;
use stowage_bench::{Sizes, ceilings, report, run, scale};

struct Args {
    sizes: Sizes,
    mode: &'static str,
    stowage_bin: PathBuf,
    distribution_bin: String,
    only_stowage: bool,
    scale: bool,
    auth: bool,
}

fn parse_args() -> Result<Args> {
    let exe_dir = std::env::current_exe()?
        .parent()
        .context("exe dir")?
        .to_path_buf();
    let mut a = Args {
        sizes: Sizes::full(),
        mode: "full",
        stowage_bin: exe_dir.join("stowage"),
        distribution_bin: "docker-registry".into(),
        only_stowage: false,
        scale: true,
        auth: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--quick" => {
                a.sizes = Sizes::quick();
                a.mode = "quick";
            }
            "--no-scale" => a.scale = false,
            "--auth" => a.auth = true,
            "--stowage-bin" => {
                a.stowage_bin = it.next().context("--stowage-bin needs a path")?.into()
            }
            "--distribution-bin" => {
                a.distribution_bin = it.next().context("--distribution-bin needs a path")?
            }
            "--only" => match it.next().as_deref() {
                Some("stowage") => a.only_stowage = true,
                _ => bail!("--only takes `stowage`"),
            },
            "-h" | "--help" => {
                println!(
                    "usage: stowage-bench [--quick] [--no-scale] [--auth] [--stowage-bin PATH] [--distribution-bin PATH] [--only stowage]"
                );
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?} (see --help)"),
        }
    }
    Ok(a)
}

#[tokio::main]
async fn main() -> Result<()> {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if argv.first().map(String::as_str) == Some("soak") {
        let bin = std::env::current_exe()?
            .parent()
            .context("exe dir")?
            .join("stowage");
        let soak = stowage_bench::soak::parse_args(&argv[1..], bin)?;
        let passed = stowage_bench::soak::run(soak).await?;
        std::process::exit(if passed { 0 } else { 1 });
    }
    let args = parse_args()?;
    let work = tempfile::Builder::new().prefix("stowage-bench").tempdir()?;
    eprintln!(
        "stowage-bench: {} mode, work dir {}",
        args.mode,
        work.path().display()
    );
    eprintln!("measuring machine ceilings");
    let (sha, sha_cpu) = ceilings::sha256(args.sizes.ceiling_bytes);
    let lo = ceilings::loopback(args.sizes.ceiling_bytes * 2).await;
    let ceil = ceilings::Ceilings {
        sha256_mbps: sha,
        sha256_cpu_s_per_gib: sha_cpu,
        loopback_mbps: lo,
    };

    let sdir = work.path().join("stowage");
    std::fs::create_dir_all(&sdir)?;
    let stowage = Registry::stowage(&args.stowage_bin, &sdir, args.auth)?;
    stowage_bench::settle().await;
    let s = run(&stowage, &args.sizes, &|w| eprintln!("stowage: {w}")).await?;
    drop(stowage);

    let d = if args.only_stowage {
        None
    } else {
        let ddir = work.path().join("distribution");
        std::fs::create_dir_all(&ddir)?;
        let dist = Registry::distribution(&args.distribution_bin, &ddir)?;
        stowage_bench::settle().await;
        let d = run(&dist, &args.sizes, &|w| eprintln!("distribution: {w}")).await?;
        Some(d)
    };
    println!("{}", report::table(&s, d.as_ref(), &ceil));
    if args.scale {
        let (huge, each, blobs, tags) = if args.mode == "quick" {
            (512 << 20, 128 << 20, 10_000, 1_000)
        } else {
            (5 << 30, 1 << 30, 100_000, 10_000)
        };
        eprintln!("stowage: scale checks");
        let dir = work.path().join("scale");
        std::fs::create_dir_all(&dir)?;
        let f = scale::run(&args.stowage_bin, &dir, huge, 4, each, blobs, tags).await?;
        println!(
            "{}",
            report::scale_table(&f, s.get("mem_idle_mib").copied().unwrap_or(0.0))
        );
    }
    Ok(())
}
