//! Test-only kernel pack whose kernels misbehave on purpose, to show that the host contains
//! them: each kernel echoes its item's first tensor, unless the item's first value is
//! negative, in which case it traps, loops forever, exhausts memory or recurses without end;
//! `burn` first busy-loops until as many milliseconds as the first value have passed on the
//! monotonic clock (slow but finite work that takes the same time on any CPU); `snoop`
//! looks for environment variables, files and the network (it imports wasi:filesystem and
//! wasi:sockets, which the registry refuses and the sandbox serves empty).
//! Built as `crunch_hostile_kernels.wasm`; never shipped.

#[cfg(target_arch = "wasm32")]
mod component {
    // The export glue that wit-bindgen generates uses `unsafe` attributes.
    #![allow(unsafe_code)]

    mod bindings {
        wit_bindgen::generate!({ path: "../../../wit", world: "kernel-pack" });
    }

    use bindings::crunch::kernel::types::{BatchResults, KernelError, KernelInfo, Packed, Tensor};
    use bindings::exports::crunch::kernel::kernels::Guest;
    use std::hint::black_box;

    const KERNELS: [(&str, &str); 8] = [
        (
            "chaos",
            "first value picks: 0 echo, -1 panic, -2 loop, -3 memory bomb, -4 recursion, -5 snoop",
        ),
        (
            "snoop",
            "returns [environment variables seen, a file read (1/0), a socket opened (1/0)]",
        ),
        (
            "burn",
            "busy-loops until the first value in milliseconds has passed, then echoes",
        ),
        ("echo", "returns the first tensor"),
        (
            "trap_on_negative",
            "panics (a wasm trap) when the first value is negative",
        ),
        (
            "spin_on_negative",
            "loops forever when the first value is negative",
        ),
        (
            "grow_on_negative",
            "allocates without bound when the first value is negative",
        ),
        (
            "recurse_on_negative",
            "recurses without bound when the first value is negative",
        ),
    ];

    struct HostilePack;

    impl Guest for HostilePack {
        fn list_kernels() -> Vec<KernelInfo> {
            KERNELS
                .iter()
                .map(|(name, summary)| KernelInfo {
                    name: name.to_string(),
                    summary: summary.to_string(),
                })
                .collect()
        }

        fn run(kernel: String, _params: Vec<(String, Tensor)>, items: Packed) -> BatchResults {
            let items = crunch_abi::Items::new(items.count, &items.shapes, &items.data);
            let results = crunch_abi::run_each(
                items,
                |e| KernelError::InvalidInput(e.to_string()),
                |tensors| {
                    let item = tensors
                        .iter()
                        .map(|t| Tensor {
                            shape: t.shape.to_vec(),
                            data: t.data.to_vec(),
                        })
                        .collect();
                    run_item(&kernel, item).map(|t| (t.shape, t.data))
                },
            );
            crunch_abi::wit_batch_results!(results, bindings::crunch::kernel::types)
        }
    }

    fn run_item(kernel: &str, mut item: Vec<Tensor>) -> Result<Tensor, KernelError> {
        if item.is_empty() {
            return Err(KernelError::InvalidInput(
                "expected at least one tensor".into(),
            ));
        }
        let first = item.swap_remove(0);
        let negative = first.data.first().is_some_and(|v| *v < 0.0);
        if kernel == "snoop" {
            return Ok(snoop());
        }
        if kernel == "chaos" {
            match first.data.first().copied().unwrap_or(0.0) {
                -1.0 => panic!("hostile kernel: chaos panic"),
                -2.0 => spin(),
                -3.0 => grow(),
                -4.0 => {
                    black_box(recurse(black_box(1)));
                }
                -5.0 => return Ok(snoop()),
                _ => {}
            }
            return Ok(first);
        }
        if kernel == "burn" {
            burn(first.data.first().copied().unwrap_or(0.0));
        }
        if negative {
            match kernel {
                "trap_on_negative" => panic!("hostile kernel: negative input {}", first.data[0]),
                "spin_on_negative" => spin(),
                "grow_on_negative" => grow(),
                "recurse_on_negative" => {
                    black_box(recurse(black_box(1)));
                }
                _ => {}
            }
        }
        if KERNELS.iter().any(|(name, _)| *name == kernel) {
            Ok(first)
        } else {
            Err(KernelError::UnknownKernel(kernel.to_string()))
        }
    }

    /// Looks for secrets: environment variables, a file, the network.
    fn snoop() -> Tensor {
        let env = std::env::vars().count() as f64;
        let file = std::fs::read("/etc/hostname").is_ok() || std::fs::read_dir("/").is_ok();
        let socket = std::net::TcpStream::connect("127.0.0.1:6379").is_ok()
            || std::net::TcpStream::connect("169.254.169.254:80").is_ok();
        Tensor {
            shape: vec![3],
            data: vec![env, f64::from(u8::from(file)), f64::from(u8::from(socket))],
        }
    }

    /// Busy-loops (the CPU stays busy, like real work) until `millis` have passed.
    fn burn(millis: f64) {
        let until = std::time::Duration::from_secs_f64(millis.max(0.0) / 1e3);
        let start = std::time::Instant::now();
        let mut x = 0u64;
        while start.elapsed() < until {
            for _ in 0..1000 {
                x = black_box(x.wrapping_add(1));
            }
        }
    }

    fn spin() {
        let mut x = 0u64;
        loop {
            x = black_box(x.wrapping_add(1));
        }
    }

    fn grow() {
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        loop {
            hoard.push(vec![1u8; 16 << 20]);
            black_box(&hoard);
        }
    }

    fn recurse(depth: u64) -> u64 {
        if depth == u64::MAX {
            return 0;
        }
        let frame = black_box([depth; 16]);
        recurse(frame[3] + 1) + frame[7]
    }

    bindings::export!(HostilePack with_types_in bindings);
}
