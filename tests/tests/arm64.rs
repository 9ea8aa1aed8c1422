//! The arm64 `crunch` binary, run under qemu user emulation, computes every golden input with
//! the same component file and writes output bytes identical to the x86_64 run.
//!
//! Needs the arm64 build and qemu: `just test-arm64` builds it (cargo-lambda with zig),
//! installs qemu-user, and runs this test with `CRUNCH_ARM64_BIN` set.

use std::process::Command;

use crunch::Tensor;
use crunch::data::codec::{self, Format};
use crunch_tests::cli::path;
use crunch_tests::{golden, paths};

#[test]
#[ignore = "needs the arm64 build and qemu-user: run `just test-arm64`"]
fn arm64_under_qemu_gives_the_same_bytes_as_x86_64_on_every_golden_input() {
    let arm64 =
        std::env::var("CRUNCH_ARM64_BIN").expect("CRUNCH_ARM64_BIN names the arm64 crunch binary");
    let sysroot =
        std::env::var("CRUNCH_ARM64_SYSROOT").unwrap_or_else(|_| "/usr/aarch64-linux-gnu".into());
    let pack = paths::component("crunch_kernels");
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut files, mut items) = (0, 0);
    for file in golden::load_all().expect("golden files") {
        for (c, case) in file.cases.iter().enumerate() {
            let input = dir.path().join(format!("{}-{c}.crb", file.kernel));
            let batch: Vec<Vec<Tensor>> = case
                .items
                .iter()
                .map(golden::GoldenItem::host_inputs)
                .collect();
            codec::write_items(&input, Format::Binary, &batch).expect("input");
            let mut args: Vec<String> = vec![
                "run".into(),
                "-k".into(),
                file.kernel.clone(),
                "-i".into(),
                path(&input).into(),
            ];
            for (name, t) in case.params().expect("params") {
                let values: Vec<String> = t.data.iter().map(|v| format!("{v:?}")).collect();
                args.push("-p".into());
                args.push(format!("{name}=[{}]", values.join(",")));
            }
            args.extend([
                "--pack".into(),
                pack.display().to_string(),
                "--quiet".into(),
            ]);
            let out_x86 = dir.path().join(format!("{}-{c}.x86_64.crb", file.kernel));
            let out_arm = dir.path().join(format!("{}-{c}.arm64.crb", file.kernel));
            let x86 = Command::new(paths::crunch_bin())
                .args(&args)
                .args(["-o", path(&out_x86)])
                .output()
                .expect("x86_64 run");
            assert!(
                x86.status.success(),
                "{}: {}",
                file.kernel,
                String::from_utf8_lossy(&x86.stderr)
            );
            let arm = Command::new("qemu-aarch64")
                .args(["-L", &sysroot, &arm64])
                .args(&args)
                .args(["-o", path(&out_arm)])
                .output()
                .expect("qemu-aarch64 (apt-get install qemu-user libc6-arm64-cross)");
            assert!(
                arm.status.success(),
                "{} under qemu: {}",
                file.kernel,
                String::from_utf8_lossy(&arm.stderr)
            );
            let (a, b) = (
                std::fs::read(&out_x86).expect("x86 out"),
                std::fs::read(&out_arm).expect("arm out"),
            );
            assert!(
                a == b,
                "{} case {c}: arm64 output bytes differ from x86_64",
                file.kernel
            );
            files += 1;
            items += case.items.len();
        }
    }
    assert!(items >= 700, "expected the full golden set, ran {items}");
    println!(
        "arm64 under qemu and x86_64: {files} golden cases, {items} items, byte-identical outputs"
    );
}
