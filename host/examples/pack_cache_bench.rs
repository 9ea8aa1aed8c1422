//! Benchmark: time to the first batch's result on a kernel pack digest seen before (memory
//! cache, disk cache in a new process) against first use (compile), as ratios in one run.
//!
//! `cargo run --release --example pack_cache_bench [-- --pack PATH]`, or `just bench-cache`.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use crunch::sandbox::cache::{CacheHit, PackCache};
use crunch::{Engine, KernelCall, Limits, Tensor, run_batch};

const ROUNDS: usize = 5;

fn first_batch(cache: &PackCache, digest: &str, bytes: &[u8]) -> Result<(Duration, CacheHit)> {
    let start = Instant::now();
    let (pack, hit) = cache.get(digest, || Ok(bytes.to_vec()))?;
    let item = vec![vec![Tensor {
        shape: vec![3],
        data: vec![-1.0, 0.0, 1.0],
    }]];
    let call = KernelCall {
        kernel: "norm_cdf",
        params: &[],
        batch_time: Duration::from_secs(10),
    };
    let outcome = run_batch(&pack, &call, 0, &item);
    let elapsed = start.elapsed();
    if outcome.error.is_some() || outcome.results.failed() > 0 {
        bail!("the batch failed: {:?}", outcome.error);
    }
    Ok((elapsed, hit))
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let pack = value("--pack").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../target/wasm32-wasip2/component/crunch_kernels.wasm")
    });
    let bytes = std::fs::read(&pack).with_context(|| format!("reading {}", pack.display()))?;
    let digest = crunch::sandbox::pack::sha256_hex(&bytes);
    let engine = Engine::new(Limits::default())?;

    // A child process: one first batch from the disk cache left by the parent.
    if let Some(dir) = value("--restart-from") {
        let cache = PackCache::new(engine, Some(PathBuf::from(dir)), 4);
        let (t, hit) = first_batch(&cache, &digest, &bytes)?;
        println!("{} {:?}", t.as_nanos(), hit);
        return Ok(());
    }

    let root = tempfile_dir()?;
    let (mut compile, mut memory, mut disk) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let dir = root.join(format!("round-{round}"));
        let cache = PackCache::new(engine.clone(), Some(dir.clone()), 4);
        let (t, hit) = first_batch(&cache, &digest, &bytes)?;
        assert_eq!(hit, CacheHit::Compiled);
        compile.push(t);
        let (t, hit) = first_batch(&cache, &digest, &bytes)?;
        assert_eq!(hit, CacheHit::Memory);
        memory.push(t);
        // A new process finds the compiled pack on disk.
        let out = Command::new(std::env::current_exe()?)
            .args([
                "--pack",
                &pack.display().to_string(),
                "--restart-from",
                &dir.display().to_string(),
            ])
            .output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        let mut parts = text.split_whitespace();
        let nanos: u64 = parts.next().context("child printed nothing")?.parse()?;
        if parts.next() != Some("Disk") {
            bail!("the restarted process did not load from the disk cache: {text}");
        }
        disk.push(Duration::from_nanos(nanos));
    }
    let _ = std::fs::remove_dir_all(&root);
    let (c, m, d) = (median(compile), median(memory), median(disk));
    println!(
        "kernel pack {} ({} bytes), median of {ROUNDS} rounds, time to first batch result:",
        pack.display(),
        bytes.len()
    );
    println!(
        "  first use (compile)            {:>10.3} ms",
        c.as_secs_f64() * 1e3
    );
    println!(
        "  cached in memory (warm worker) {:>10.3} ms   compile / memory = {:.0}x",
        m.as_secs_f64() * 1e3,
        c.as_secs_f64() / m.as_secs_f64()
    );
    println!(
        "  disk cache, new process        {:>10.3} ms   compile / disk   = {:.0}x",
        d.as_secs_f64() * 1e3,
        c.as_secs_f64() / d.as_secs_f64()
    );
    println!("  the disk cache survived {ROUNDS} process restarts");
    Ok(())
}

fn tempfile_dir() -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("crunch-cache-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
