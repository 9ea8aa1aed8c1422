//! The `crunch` binary end to end: listing kernels, running files in every format, errors and
//! exit codes.

use std::process::Output;

use crunch::Tensor;
use crunch::data::codec::{self, Format};
use crunch_tests::cli::{Crunch, path, stderr};
use crunch_tests::golden;

fn crunch(args: &[&str]) -> Output {
    Crunch::new().pack("crunch_kernels").run(args)
}

fn golden_items(kernel: &str) -> Vec<Vec<Tensor>> {
    let file = golden::load(kernel).expect("golden file");
    file.cases
        .iter()
        .flat_map(|c| c.items.iter())
        .map(golden::GoldenItem::host_inputs)
        .collect()
}

#[test]
fn kernels_lists_all_twelve() {
    let out = crunch(&["kernels"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    for k in golden::KERNELS {
        assert!(text.contains(k), "missing {k} in:\n{text}");
    }
    assert!(text.contains("sha256:"));
}

#[test]
fn a_pack_is_compiled_once_then_loaded_from_the_disk_cache() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = dir.path().join("cache");
    let input = dir.path().join("x.json");
    std::fs::write(&input, "[[[0.5, -1.0]]]").expect("writing the input");
    let output = dir.path().join("out.json");
    let run = || {
        Crunch::new()
            .pack("crunch_kernels")
            .env("CRUNCH_CACHE_DIR", &cache)
            .run(&[
                "run",
                "-k",
                "norm_cdf",
                "-i",
                path(&input),
                "-o",
                path(&output),
            ])
    };
    // Each compiled entry with its inode: an entry written again (through a new file renamed
    // into place) has a new one.
    let compiled_entries = || -> Vec<(std::path::PathBuf, u64)> {
        use std::os::unix::fs::MetadataExt;
        let mut entries: Vec<_> = std::fs::read_dir(&cache)
            .expect("the cache directory exists after a run")
            .map(|e| e.expect("cache entry").path())
            .filter(|p| p.extension().is_some_and(|x| x == "cwasm"))
            .map(|p| {
                let inode = std::fs::metadata(&p).expect("entry").ino();
                (p, inode)
            })
            .collect();
        entries.sort();
        entries
    };
    let first = run();
    assert!(first.status.success(), "{}", stderr(&first));
    let after_first = compiled_entries();
    assert_eq!(after_first.len(), 1, "one compiled pack: {after_first:?}");
    let first_output = std::fs::read(&output).expect("output");

    // Again: loaded from the entry, which is not written again, with the same results.
    let second = run();
    assert!(second.status.success(), "{}", stderr(&second));
    assert_eq!(compiled_entries(), after_first);
    assert_eq!(std::fs::read(&output).expect("output"), first_output);

    // A damaged entry is noticed, and the pack compiled and cached again.
    std::fs::write(&after_first[0].0, b"not compiled code").expect("damaging the entry");
    let third = run();
    assert!(third.status.success(), "{}", stderr(&third));
    assert!(
        stderr(&third).contains("integrity check"),
        "{}",
        stderr(&third)
    );
    assert_eq!(std::fs::read(&output).expect("output"), first_output);
    assert_eq!(compiled_entries().len(), 1);

    // Older entries beyond the cache's size go when one is added, least recently used first.
    let ours = compiled_entries().remove(0).0;
    for i in 0..crunch::sandbox::cache::DISK_ENTRIES + 5 {
        let old = cache.join(format!("old{i:02}.cwasm"));
        std::fs::write(&old, b"old").expect("an old entry");
        std::fs::write(old.with_extension("sha256"), b"x").expect("its checksum");
        let when = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000 + i as u64);
        let file = std::fs::File::options()
            .write(true)
            .open(&old)
            .expect("entry");
        file.set_modified(when).expect("dating the entry");
    }
    std::fs::remove_file(&ours).expect("removing ours, so the next run compiles");
    let fourth = run();
    assert!(fourth.status.success(), "{}", stderr(&fourth));
    let kept = compiled_entries();
    assert_eq!(kept.len(), crunch::sandbox::cache::DISK_ENTRIES);
    assert!(kept.iter().any(|(p, _)| *p == ours), "the new entry stays");
    let oldest_kept = cache.join("old06.cwasm");
    assert!(kept.iter().any(|(p, _)| *p == oldest_kept), "{kept:?}");
    assert!(!cache.join("old05.cwasm").exists() && !cache.join("old05.sha256").exists());
}

#[test]
fn every_format_gives_the_same_results() {
    let dir = tempfile::tempdir().expect("tempdir");
    let items = golden_items("black_scholes");
    let mut outputs = Vec::new();
    for (input_format, ext) in [
        (Format::Json, "json"),
        (Format::Npy, "npy"),
        (Format::Binary, "crb"),
    ] {
        let input = dir.path().join(format!("in.{ext}"));
        codec::write_items(&input, input_format, &items).expect("write input");
        let output = dir.path().join(format!("out-{ext}.crb"));
        let out = crunch(&[
            "run",
            "-k",
            "black_scholes",
            "-i",
            path(&input),
            "-o",
            path(&output),
            "--batch-size",
            "7",
        ]);
        assert!(out.status.success(), "{ext}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(&format!("{} ok, 0 failed", items.len())),
            "{}",
            stderr(&out)
        );
        outputs.push(codec::read_results(&output, Format::Binary).expect("read results"));
    }
    assert_eq!(outputs[0].len(), items.len());
    assert_eq!(outputs[0], outputs[1]);
    assert_eq!(outputs[0], outputs[2]);
}

#[test]
fn bad_items_get_their_own_errors_and_exit_code_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("in.json");
    std::fs::write(
        &input,
        r#"{"items": [[100, 100, 1, 0.01, 0.2, 1], [100, 100, 1], [-5, 100, 1, 0.01, 0.2, 0], [100, 90, 0.5, 0.02, 0.3, 0]]}"#,
    )
    .expect("write");
    let output = dir.path().join("out.json");
    let out = crunch(&[
        "run",
        "-k",
        "black_scholes",
        "-i",
        path(&input),
        "-o",
        path(&output),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("item 1") && err.contains("invalid-input"),
        "{err}"
    );
    assert!(err.contains("item 2") && err.contains("domain"), "{err}");
    let results = codec::read_results(&output, Format::Json).expect("results");
    assert!(results[0].is_ok() && results[3].is_ok());
    assert_eq!(
        results[1].as_ref().unwrap_err().kind(),
        crunch::ErrorKind::InvalidInput
    );
    assert_eq!(
        results[2].as_ref().unwrap_err().kind(),
        crunch::ErrorKind::Domain
    );
}

#[test]
fn malformed_inputs_and_arguments_fail_clearly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let output = dir.path().join("out.json");
    let cases: [(&str, &[u8], &str); 4] = [
        ("trunc.crb", b"CRNCHBIN\x01\x00\x00\x00", "truncated"),
        ("magic.crb", b"NOTCRUNCHFILE....", "not a Crunch binary"),
        (
            "bad.json",
            br#"[[1, 2], {"shape": [2, 2], "data": [1]}]"#,
            "item 1",
        ),
        ("bad.npy", b"\x93NUMPY garbage", "not a valid .npy"),
    ];
    for (name, bytes, expected) in cases {
        let input = dir.path().join(name);
        std::fs::write(&input, bytes).expect("write");
        let out = crunch(&[
            "run",
            "-k",
            "norm_cdf",
            "-i",
            path(&input),
            "-o",
            path(&output),
        ]);
        assert_eq!(out.status.code(), Some(1), "{name}");
        assert!(stderr(&out).contains(expected), "{name}: {}", stderr(&out));
    }
    let input = dir.path().join("ok.json");
    std::fs::write(&input, "[[1]]").expect("write");
    let out = crunch(&[
        "run",
        "-k",
        "no_such_kernel",
        "-i",
        path(&input),
        "-o",
        path(&output),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no kernel `no_such_kernel`"),
        "{}",
        stderr(&out)
    );
    let out = crunch(&[
        "run",
        "-k",
        "percentile",
        "-p",
        "q=abc",
        "-i",
        path(&input),
        "-o",
        path(&output),
    ]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("not a number"), "{}", stderr(&out));
}

#[test]
fn npy_output_with_failures_lists_errors_beside_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("in.json");
    std::fs::write(&input, "[[1, 2, 3], [4, 5, 6]]").expect("write");
    let output = dir.path().join("out.npy");
    let out = crunch(&[
        "run",
        "-k",
        "percentile",
        "-p",
        "q=50,200",
        "-i",
        path(&input),
        "-o",
        path(&output),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let sidecar = dir.path().join("out.npy.errors.json");
    let text = std::fs::read_to_string(&sidecar).expect("sidecar");
    assert!(
        text.contains("\"item\": 1") && text.contains("[0, 100]"),
        "{text}"
    );
}
