//! Bad output, the other half of the matrix (docs/bad-input.md): outputs written whole and
//! never over the input, item errors beside NPY results, results over what one call may hand
//! back, text that kernels control (escaped and cut before it is printed), and the disk cache
//! of a worker with two threads.

use std::path::Path;
use std::process::Output;

use crunch_tests::cli::{
    Crunch, crunch_with as crunch, drain, path, run_kernel, stderr, submit_six_items as submit,
};
use crunch_tests::redis_server::RedisServer;

#[test]
fn outputs_never_replace_the_input_nor_leave_a_partial_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("x.json");
    let text = "[[1, 2], [3]]";
    std::fs::write(&input, text).expect("write");
    // The same file, by its name and through a hard link.
    let link = dir.path().join("link.json");
    std::fs::hard_link(&input, &link).expect("hard link");
    for output in [&input, &link] {
        let out = run_kernel("norm_cdf", &input, output, &[]);
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        assert!(
            stderr(&out).contains("is the input file"),
            "{}",
            stderr(&out)
        );
        assert_eq!(std::fs::read_to_string(&input).expect("input"), text);
    }
    // Ragged results cannot be NPY: the old output stays whole, the error says what would hold
    // them, and no partial file is left behind.
    let output = dir.path().join("out.npy");
    std::fs::write(&output, b"earlier results").expect("write");
    let out = run_kernel("norm_cdf", &input, &output, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("NPY needs one shape, use .json or .crb"),
        "{}",
        stderr(&out)
    );
    assert_eq!(std::fs::read(&output).expect("output"), b"earlier results");
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .expect("dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["link.json", "out.npy", "x.json"]);
}

#[test]
fn results_to_npy_write_the_item_errors_beside_them() {
    let redis = RedisServer::start().expect("redis");
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("in.json");
    std::fs::write(&input, "[[100, 100, 1, 0.01, 0.2, 1], [100, 100, 1]]").expect("write");
    let env = [("CRUNCH_REDIS", redis.url())];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let out = crunch(&["submit", "-k", "black_scholes", "-i", path(&input)], &env);
    assert!(out.status.success(), "{}", stderr(&out));
    let job = String::from_utf8_lossy(&out.stdout).trim().to_string();
    drain(&redis.url(), &job, 1);
    let output = dir.path().join("greeks.npy");
    let out = crunch(&["results", &job, "-o", path(&output)], &env);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let errors = dir.path().join("greeks.npy.errors.json");
    assert!(
        stderr(&out).contains(&format!("item errors written to {}", errors.display())),
        "{}",
        stderr(&out)
    );
    let errors: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&errors).expect("errors file")).expect("JSON");
    assert_eq!(errors["errors"][0]["item"], 1, "{errors}");
    assert_eq!(errors["errors"][0]["kind"], "invalid-input", "{errors}");
}

fn norm_cdf_job(dir: &Path, items: usize, values: usize) -> std::path::PathBuf {
    let rows: Vec<Vec<crunch::Tensor>> = (0..items)
        .map(|i| {
            vec![crunch::Tensor {
                shape: vec![values as u32],
                data: (0..values).map(|j| ((i + j) % 7) as f64 - 3.0).collect(),
            }]
        })
        .collect();
    let input = dir.join(format!("in-{items}x{values}.npy"));
    crunch::data::codec::write_items(&input, crunch::data::codec::Format::Npy, &rows)
        .expect("input");
    input
}

#[test]
fn a_batch_whose_outputs_pass_128_mib_completes() {
    // 4096 items of 4100 values: 134 MB of results in one batch, past wasmtime's default
    // hostcall limit of 128 MiB, within the 1 GiB batch memory it is raised to.
    let dir = tempfile::tempdir().expect("tempdir");
    let input = norm_cdf_job(dir.path(), 4096, 4100);
    let output = dir.path().join("out.npy");
    let out = run_kernel(
        "norm_cdf",
        &input,
        &output,
        &["--batch-size", "4096", "--threads", "1"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("4096 ok, 0 failed"),
        "{}",
        stderr(&out)
    );
    assert!(!dir.path().join("out.npy.errors.json").exists());
}

#[test]
fn results_over_the_call_limit_are_asked_for_in_halves_down_to_one_item() {
    use crunch::{Engine, KernelCall, KernelPack, Limits, Tensor};
    let limits = Limits {
        max_result_bytes: Some(1 << 20),
        ..Limits::default()
    };
    let engine = Engine::new(limits).expect("engine");
    let pack =
        KernelPack::load(&engine, &crunch_tests::paths::component("crunch_kernels")).expect("pack");
    // 40 items of 10,000 values (80 KB of results each, 3.2 MB in all), one of 200,000 values
    // (1.6 MB: over the 1 MiB limit on its own).
    let mut items: Vec<Vec<Tensor>> = (0..40)
        .map(|i| {
            vec![Tensor {
                shape: vec![10_000],
                data: vec![f64::from(i) / 40.0; 10_000],
            }]
        })
        .collect();
    items[17] = vec![Tensor {
        shape: vec![200_000],
        data: vec![0.0; 200_000],
    }];
    let call = KernelCall {
        kernel: "norm_cdf",
        params: &[],
        batch_time: limits.batch_time,
    };
    let outcome = crunch::run_batch(&pack, &call, 3, &items);
    assert!(outcome.error.is_none(), "{:?}", outcome.error);
    let results = outcome.results.to_vec();
    for (i, r) in results.iter().enumerate() {
        if i == 17 {
            let e = r.as_ref().expect_err("item 17 is over the limit");
            assert_eq!(e.kind(), crunch::ErrorKind::BatchFailed);
            assert!(
                e.message()
                    .contains("kernel `norm_cdf`, batch 3: the item's result is over the 1 MiB"),
                "{}",
                e.message()
            );
        } else {
            let t = r.as_ref().expect("computed");
            assert_eq!(t.data.len(), 10_000);
            assert_eq!(t.data[0].to_bits(), native_cdf(i).to_bits(), "item {i}");
        }
    }
}

/// norm_cdf of item `i`'s value, computed by the same kernel natively.
fn native_cdf(i: usize) -> f64 {
    let x = crunch_kernels::Tensor {
        shape: vec![],
        data: vec![i as f64 / 40.0],
    };
    let out = crunch_kernels::run("norm_cdf", &[], &[vec![x]]);
    out[0].as_ref().expect("native norm_cdf").data[0]
}

/// Runs hostile `kernel` over the JSON `items`, one item per batch; the output is JSON.
fn run_one_item_batches(
    kernel: &str,
    items: &str,
) -> (Output, std::path::PathBuf, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("in.json");
    std::fs::write(&input, items).expect("write");
    let output = dir.path().join("out.json");
    let out = Crunch::new().pack("crunch_hostile_kernels").run(&[
        "run",
        "-k",
        kernel,
        "-i",
        path(&input),
        "-o",
        path(&output),
        "--batch-size",
        "1",
    ]);
    (out, output, dir)
}

/// Raw bytes a terminal would act on: ESC, NUL, a right-to-left override.
fn assert_no_raw_controls(what: &str, bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    assert!(
        !text.contains('\u{1b}') && !text.contains('\0') && !text.contains('\u{202e}'),
        "{what} holds raw control characters: {text:?}"
    );
}

#[test]
fn kernel_text_is_escaped_and_cut_short_before_it_is_printed() {
    // An error full of escapes, a 2 MiB error, a panic full of escapes.
    let (out, output, _dir) = run_one_item_batches("raw_text", "[[0], [2], [-1]]");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_no_raw_controls("stderr", &out.stderr);
    let err = stderr(&out);
    assert!(
        err.contains("\\u{1b}[31mred\\u{1b}[2J\\0nul\\u{202e}desrever"),
        "{err}"
    );
    assert!(err.contains("more bytes)"), "{err}");
    assert!(err.len() < 32 << 10, "{} bytes of stderr", err.len());
    // The output keeps what the kernel said, cut at 16 KiB.
    let results = crunch::data::codec::read_results(&output, crunch::data::codec::Format::Json)
        .expect("results");
    let long = results[1]
        .as_ref()
        .expect_err("item 1 fails")
        .message()
        .to_string();
    assert!(
        long.len() < 17 << 10 && long.ends_with("more bytes)"),
        "{}",
        long.len()
    );
    let panic = results[2]
        .as_ref()
        .expect_err("item 2 fails")
        .message()
        .to_string();
    assert!(panic.contains("hostile kernel"), "{panic}");
}

#[test]
fn kernel_names_are_escaped_when_listed() {
    let out = Crunch::new()
        .pack("crunch_hostile_bad_names")
        .run(&["kernels"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_no_raw_controls("stdout", &out.stdout);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("evil\\u{1b}[31mred"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn a_stack_overflow_says_so() {
    let (out, _, _dir) = run_one_item_batches("recurse_on_negative", "[[1], [-1]]");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("kernel `recurse_on_negative`, batch 1: trapped: stack overflow"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_two_thread_worker_writes_its_disk_cache_without_a_warning() {
    let redis = RedisServer::start().expect("redis");
    let dir = tempfile::tempdir().expect("tempdir");
    let job = submit(&redis.url(), dir.path());
    let log = dir.path().join("worker.log");
    let worker = Crunch::new()
        .redis(&redis.url())
        .env("CRUNCH_CACHE_DIR", dir.path().join("cache"))
        .spawn_worker_with_stderr(
            &["--job", &job, "--exit-when-done", "--threads", "2"],
            std::fs::File::create(&log).expect("log"),
        );
    crunch_tests::cli::wait_success(worker, std::time::Duration::from_secs(120));
    let text = std::fs::read_to_string(&log).expect("log");
    assert!(!text.contains("could not write the disk cache"), "{text}");
    let cached: Vec<_> = std::fs::read_dir(dir.path().join("cache"))
        .expect("cache dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        cached.len(),
        2,
        "one compiled pack and its checksum: {cached:?}"
    );
}
