//! Test-only kernel pack whose kernels misbehave on purpose, to show that the host contains
//! them: each kernel echoes its item's first tensor, unless the item's first value is
//! negative, in which case it traps, loops forever, exhausts memory or recurses without end;
//! `burn` first busy-loops until as many milliseconds as the first value have passed on the
//! monotonic clock (slow but finite work that takes the same time on any CPU); `snoop`
//! looks for environment variables, files and the network (it imports wasi:filesystem and
//! wasi:sockets, which the registry refuses and the sandbox serves empty); `raw_text` fails
//! with terminal escapes, NUL and right-to-left overrides in its messages, or a message of
//! many MiB. Built as `crunch_hostile_kernels.wasm`; never shipped. Two variants misbehave in
//! `list-kernels`: feature `bad-names` lists an empty, a repeated and a control-character name
//! (`crunch_hostile_bad_names.wasm`), `endless-list` never returns
//! (`crunch_hostile_endless_list.wasm`).

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

    const KERNELS: [(&str, &str); 9] = [
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
        (
            "raw_text",
            "fails with escapes in its message (first value 0), a message of that many MiB (> 0), or panics with escapes (< 0)",
        ),
    ];

    /// Text a terminal would act on: colour, clear screen, NUL, a right-to-left override.
    const ESCAPES: &str = "\u{1b}[31mred\u{1b}[2J\0nul\u{202e}desrever";

    struct HostilePack;

    impl Guest for HostilePack {
        fn list_kernels() -> Vec<KernelInfo> {
            if cfg!(feature = "endless-list") {
                spin();
            }
            let mut names: Vec<(String, &str)> = KERNELS
                .iter()
                .map(|(name, summary)| (name.to_string(), *summary))
                .collect();
            if cfg!(feature = "bad-names") {
                names.push((String::new(), "an empty name"));
                names.push(("echo".into(), "a second echo"));
                names.push((format!("evil{ESCAPES}"), "a name with escapes"));
            }
            names
                .into_iter()
                .map(|(name, summary)| KernelInfo {
                    name,
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
        if kernel == "raw_text" {
            let first = first.data.first().copied().unwrap_or(0.0);
            if first < 0.0 {
                panic!("hostile kernel: {ESCAPES}");
            }
            let message = if first > 0.0 {
                "e".repeat((first * f64::from(1u32 << 20)) as usize)
            } else {
                format!("hostile kernel: {ESCAPES}")
            };
            return Err(KernelError::InvalidInput(message));
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

    /// Looks for nothing in the `list-kernels` variants (feature `no-snoop`), which must import
    /// only what the registry grants to reach its later checks.
    #[cfg(feature = "no-snoop")]
    fn snoop() -> Tensor {
        Tensor {
            shape: vec![3],
            data: vec![0.0; 3],
        }
    }

    /// Looks for secrets: environment variables, a file, the network.
    #[cfg(not(feature = "no-snoop"))]
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
