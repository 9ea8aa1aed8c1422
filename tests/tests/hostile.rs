//! Misbehaving kernels fail only their own batch, with an error that names kernel, batch and
//! reason, within their limits; the other batches of the same run complete.

use std::time::{Duration, Instant};

use crunch::data::codec::{self, Format};
use crunch::data::wire;
use crunch::{BatchError, Engine, ItemError, KernelCall, KernelPack, Limits, Tensor};
use crunch_tests::paths;

/// Six items in three batches of two; only batch 1 (items 2 and 3) holds a negative value.
fn items() -> Vec<Vec<Tensor>> {
    [1.0, 2.0, -1.0, 3.0, 4.0, 5.0]
        .iter()
        .map(|&v| {
            vec![Tensor {
                shape: vec![1],
                data: vec![v],
            }]
        })
        .collect()
}

/// `items` as an input in the wire layout, as `crunch run` reads its input file.
fn wire_input(items: &[Vec<Tensor>]) -> wire::Input {
    let bytes = codec::encode_items(items);
    codec::read_input_from(&bytes[..], Format::Binary, None).expect("items read back")
}

fn run(kernel: &str, limits: Limits) -> (Vec<crunch::BatchOutcome>, Duration) {
    let engine = Engine::new(limits).expect("engine");
    let pack =
        KernelPack::load(&engine, &paths::component("crunch_hostile_kernels")).expect("pack");
    let call = KernelCall {
        kernel,
        params: &[],
        batch_time: limits.batch_time,
    };
    let start = Instant::now();
    let outcomes =
        crunch::run_batches(&pack, &call, &wire_input(&items()), 2, 2, |_| {}).expect("run");
    (outcomes, start.elapsed())
}

fn assert_only_batch_1_failed(outcomes: &[crunch::BatchOutcome]) {
    assert_eq!(outcomes.len(), 3);
    for (b, values) in [(0usize, [1.0, 2.0]), (2, [4.0, 5.0])] {
        let o = &outcomes[b];
        assert!(o.error.is_none(), "batch {b} should succeed: {:?}", o.error);
        let got: Vec<f64> = o
            .results
            .iter()
            .map(|r| r.expect("ok item").data[0])
            .collect();
        assert_eq!(got, values);
    }
    for r in outcomes[1].results.iter() {
        assert!(
            matches!(r, Err(ItemError::BatchFailed(m)) if m.contains("batch 1")),
            "{r:?}"
        );
    }
}

#[test]
fn a_trap_fails_only_its_batch_with_the_panic_message() {
    let (outcomes, _) = run("trap_on_negative", Limits::default());
    assert_only_batch_1_failed(&outcomes);
    let error = outcomes[1].error.as_ref().expect("batch 1 failed");
    let text = error.to_string();
    assert!(
        matches!(error, BatchError::Trap { batch: 1, .. }),
        "{error:?}"
    );
    assert!(text.contains("kernel `trap_on_negative`"), "{text}");
    assert!(text.contains("hostile kernel: negative input -1"), "{text}");
    assert!(text.contains("wasm backtrace"), "{text}");
}

#[test]
fn an_endless_loop_is_interrupted_at_its_time_limit() {
    let limit = Duration::from_millis(500);
    let (outcomes, elapsed) = run(
        "spin_on_negative",
        Limits {
            batch_time: limit,
            ..Limits::default()
        },
    );
    assert_only_batch_1_failed(&outcomes);
    let error = outcomes[1].error.as_ref().expect("batch 1 failed");
    assert!(
        matches!(error, BatchError::Timeout { batch: 1, limit: l, .. } if *l == limit),
        "{error:?}"
    );
    assert!(error.to_string().contains("time limit"), "{error}");
    // The looping batch stops at its limit, not at some later point (generous bound).
    assert!(
        elapsed < limit * 10,
        "run took {elapsed:?} for a {limit:?} limit"
    );
}

#[test]
fn a_memory_bomb_is_refused_at_the_limit() {
    let limits = Limits {
        memory_bytes: 64 << 20,
        ..Limits::default()
    };
    let (outcomes, _) = run("grow_on_negative", limits);
    assert_only_batch_1_failed(&outcomes);
    let error = outcomes[1].error.as_ref().expect("batch 1 failed");
    assert!(
        matches!(error, BatchError::MemoryLimit { batch: 1, limit, .. } if *limit == 64 << 20),
        "{error:?}"
    );
}

#[test]
fn unbounded_recursion_traps() {
    let (outcomes, _) = run("recurse_on_negative", Limits::default());
    assert_only_batch_1_failed(&outcomes);
    assert!(matches!(
        outcomes[1].error,
        Some(BatchError::Trap { batch: 1, .. })
    ));
}

#[test]
fn a_snooping_kernel_finds_no_environment_files_or_network() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("in.json");
    std::fs::write(&input, "[[1]]").expect("input");
    let output = dir.path().join("out.json");
    let out = std::process::Command::new(paths::crunch_bin())
        .args(["run", "-k", "snoop", "-i"])
        .arg(&input)
        .arg("-o")
        .arg(&output)
        .arg("--pack")
        .arg(paths::component("crunch_hostile_kernels"))
        .env("AWS_SECRET_ACCESS_KEY", "do-not-leak")
        .env("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
        .output()
        .expect("crunch run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let results = codec::read_results(&output, Format::Json).expect("results");
    let seen = &results[0]
        .as_ref()
        .expect("snoop returns what it found")
        .data;
    assert_eq!(
        seen,
        &vec![0.0, 0.0, 0.0],
        "[env vars, file read, socket opened]"
    );
}

#[test]
fn hostile_and_normal_batches_in_one_job() {
    let limits = Limits {
        batch_time: Duration::from_millis(700),
        memory_bytes: 64 << 20,
        ..Limits::default()
    };
    let engine = Engine::new(limits).expect("engine");
    let pack =
        KernelPack::load(&engine, &paths::component("crunch_hostile_kernels")).expect("pack");
    let call = KernelCall {
        kernel: "chaos",
        params: &[],
        batch_time: limits.batch_time,
    };
    let picks = [0.0, -1.0, 0.0, -2.0, 0.0, -3.0, 0.0, -4.0, 0.0, -5.0];
    let items: Vec<Vec<Tensor>> = picks
        .iter()
        .map(|&v| {
            vec![Tensor {
                shape: vec![1],
                data: vec![v],
            }]
        })
        .collect();
    let start = Instant::now();
    let outcomes =
        crunch::run_batches(&pack, &call, &wire_input(&items), 1, 2, |_| {}).expect("run");
    let elapsed = start.elapsed();
    for (b, outcome) in outcomes.iter().enumerate() {
        let error = outcome.error.as_ref().map(ToString::to_string);
        match b {
            0 | 2 | 4 | 6 | 8 => assert_eq!(
                outcome.results.get(0).unwrap().expect("normal batch").data,
                vec![0.0]
            ),
            1 => assert!(
                error
                    .as_deref()
                    .is_some_and(|e| e.contains("batch 1") && e.contains("chaos panic")),
                "{error:?}"
            ),
            3 => assert!(
                matches!(outcome.error, Some(BatchError::Timeout { batch: 3, .. })),
                "{error:?}"
            ),
            5 => assert!(
                matches!(
                    outcome.error,
                    Some(BatchError::MemoryLimit { batch: 5, .. })
                ),
                "{error:?}"
            ),
            7 => assert!(
                matches!(outcome.error, Some(BatchError::Trap { batch: 7, .. })),
                "{error:?}"
            ),
            9 => assert_eq!(
                outcome.results.get(0).unwrap().expect("snoop").data,
                vec![0.0, 0.0, 0.0],
                "snoop found something"
            ),
            _ => unreachable!(),
        }
    }
    assert!(elapsed < Duration::from_secs(10), "took {elapsed:?}");
}
