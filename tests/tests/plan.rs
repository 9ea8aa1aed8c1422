//! `crunch plan` on real items through the standard pack: every deployment modelled, the bill's
//! arithmetic consistent with the price table, prices and speed ratios overridable, bad
//! options refused.

use crunch_tests::cli::{Crunch, contracts_file, ok_stdout, path, stderr};
use serde_json::Value;

fn plan(args: &[&str]) -> std::process::Output {
    Crunch::new()
        .pack("crunch_kernels")
        .run(&[&["plan"], args].concat())
}

#[test]
fn a_plan_prices_every_deployment_from_the_table() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = contracts_file(dir.path(), 20_000);
    let common = [
        "-k",
        "black_scholes",
        "-i",
        path(&input),
        "--sample-time",
        "0.1",
    ];
    let json: Value = serde_json::from_str(&ok_stdout(plan(
        &[
            &common[..],
            &["--workers", "1,2", "--json", "--speed-ratio", "x86_64=2"],
        ]
        .concat(),
    )))
    .expect("plan JSON");
    let estimates = json["estimates"].as_array().expect("estimates");
    assert_eq!(
        estimates.len(),
        2 + 3 * 2,
        "2 local, 3 memory sizes x 2 architectures"
    );
    let price = |arch: &str| {
        json["prices"]["gb_second_usd"][arch]
            .as_f64()
            .expect("price")
    };
    let request = json["prices"]["request_usd_per_million"]
        .as_f64()
        .expect("request")
        / 1e6;
    let mut x86_batch = Vec::new();
    for e in estimates.iter().filter(|e| e["kind"] == "lambda") {
        let bill = &e["bill"];
        let invocations = e["workers"].as_f64().expect("workers");
        let mb = e["memory_mb"].as_f64().expect("memory");
        let ms = bill["billed_ms_per_invocation"]
            .as_f64()
            .expect("billed ms");
        assert!(ms >= e["wall_s"].as_f64().expect("wall") * 1e3, "{e}");
        let gb_s = invocations * mb / 1024.0 * ms / 1e3;
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * b.abs().max(1e-12);
        assert!(
            close(bill["gb_seconds"].as_f64().expect("gb-s"), gb_s),
            "{e}"
        );
        let arch = e["arch"].as_str().expect("arch");
        let total = invocations * request + gb_s * price(arch);
        assert!(
            close(bill["total_usd"].as_f64().expect("total"), total),
            "{e}"
        );
        if arch == "x86_64" {
            x86_batch.push(e["batch_s"].as_f64().expect("batch s"));
        } else {
            // The speed ratio given for x86_64 leaves arm64 at 1.
            assert!(
                json["notes"][0]
                    .as_str()
                    .expect("note")
                    .contains("1x on arm64")
            );
        }
    }
    assert_eq!(x86_batch.len(), 3);

    // A price given on the command line replaces the table's.
    let cheap: Value = serde_json::from_str(&ok_stdout(plan(
        &[
            &common[..],
            &[
                "--json",
                "--arch",
                "arm64",
                "--lambda-memory",
                "1769",
                "--price",
                "arm64=0",
                "--price",
                "request=0",
            ],
        ]
        .concat(),
    )))
    .expect("plan JSON");
    assert_eq!(cheap["estimates"][2]["bill"]["total_usd"], 0.0);

    let table = ok_stdout(plan(&common));
    assert!(
        table.contains("lambda arm64 10240 MB") && table.contains("--speed-ratio"),
        "{table}"
    );

    for bad in [
        &["--lambda-memory", "20000"][..],
        &["--arch", "sparc"],
        &["--speed-ratio", "arm64=-1"],
        &["--price", "gpu=1"],
    ] {
        let out = plan(&[&common[..], bad].concat());
        assert!(!out.status.success(), "{bad:?} was accepted");
        assert!(
            stderr(&out).contains(bad[0]) || stderr(&out).contains("gpu"),
            "{}",
            stderr(&out)
        );
    }
}
