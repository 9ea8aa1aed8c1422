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
//! (`crunch_hostile_endless_list.wasm`). Like any pack, a table of plain functions exported
//! with `crunch_abi::export_pack!`; the endless variant answers `list-kernels` itself.

use std::hint::black_box;

use crunch_abi::{Compute, Kernel, KernelError, Params, Tensor, TensorRef};

/// Text a terminal would act on: colour, clear screen, NUL, a right-to-left override (a macro,
/// so that a kernel name can hold it too).
macro_rules! escapes {
    () => {
        "\u{1b}[31mred\u{1b}[2J\0nul\u{202e}desrever"
    };
}

/// [`escapes!`] as a constant.
const ESCAPES: &str = escapes!();

/// A kernel that computes item by item and takes no parameters.
const fn kernel(
    name: &'static str,
    summary: &'static str,
    compute: fn(Params<'_>, &[TensorRef<'_>]) -> Result<Tensor, KernelError>,
) -> Kernel {
    Kernel {
        name,
        summary,
        params: &[],
        compute: Compute::Item(compute),
    }
}

/// The kernels, then (feature `bad-names`) the names a registry must refuse.
macro_rules! kernels {
    ($($extra:expr),*) => {
        &[
            kernel(
                "chaos",
                "first value picks: 0 echo, -1 panic, -2 loop, -3 memory bomb, -4 recursion, -5 snoop",
                chaos,
            ),
            kernel(
                "snoop",
                "returns [environment variables seen, a file read (1/0), a socket opened (1/0)]",
                |_, item| first(item).map(|_| snoop()),
            ),
            kernel(
                "burn",
                "busy-loops until the first value in milliseconds has passed, then echoes",
                |_, item| {
                    burn(first_value(item)?);
                    echo(item)
                },
            ),
            kernel("echo", "returns the first tensor", |_, item| echo(item)),
            kernel(
                "trap_on_negative",
                "panics (a wasm trap) when the first value is negative",
                |_, item| {
                    let v = first_value(item)?;
                    if v < 0.0 {
                        panic!("hostile kernel: negative input {v}");
                    }
                    echo(item)
                },
            ),
            kernel(
                "spin_on_negative",
                "loops forever when the first value is negative",
                |_, item| on_negative(item, || spin()),
            ),
            kernel(
                "grow_on_negative",
                "allocates without bound when the first value is negative",
                |_, item| on_negative(item, || grow()),
            ),
            kernel(
                "recurse_on_negative",
                "recurses without bound when the first value is negative",
                |_, item| {
                    on_negative(item, || {
                        black_box(recurse(black_box(1)));
                    })
                },
            ),
            kernel(
                "raw_text",
                "fails with escapes in its message (first value 0), a message of that many MiB (> 0), or panics with escapes (< 0)",
                raw_text,
            ),
            $($extra),*
        ]
    };
}

/// The pack's kernels.
#[cfg(not(feature = "bad-names"))]
pub const KERNELS: &[Kernel] = kernels!();

/// The pack's kernels, then an empty, a repeated and a control-character name.
#[cfg(feature = "bad-names")]
pub const KERNELS: &[Kernel] = kernels!(
    kernel("", "an empty name", |_, item| echo(item)),
    kernel("echo", "a second echo", |_, item| echo(item)),
    kernel(
        concat!("evil", escapes!()),
        "a name with escapes",
        |_, item| echo(item)
    )
);

#[cfg(not(feature = "endless-list"))]
crunch_abi::export_pack!(KERNELS);

// `list-kernels` never returns.
#[cfg(feature = "endless-list")]
crunch_abi::export_pack!(KERNELS, list_kernels: endless_list);

#[cfg(all(feature = "endless-list", target_arch = "wasm32"))]
fn endless_list(_: &[Kernel]) -> ! {
    spin()
}

/// The item's first tensor, or an error when it has none.
fn first<'a>(item: &[TensorRef<'a>]) -> Result<TensorRef<'a>, KernelError> {
    item.first()
        .copied()
        .ok_or_else(|| KernelError::InvalidInput("expected at least one tensor".into()))
}

/// The first value of the item's first tensor (0 when that tensor is empty).
fn first_value(item: &[TensorRef<'_>]) -> Result<f64, KernelError> {
    Ok(first(item)?.data.first().copied().unwrap_or(0.0))
}

/// The item's first tensor, unchanged.
fn echo(item: &[TensorRef<'_>]) -> Result<Tensor, KernelError> {
    let t = first(item)?;
    Ok(Tensor {
        shape: t.shape.to_vec(),
        data: t.data.to_vec(),
    })
}

/// Misbehaves with `act` when the first value is negative, else echoes.
fn on_negative(item: &[TensorRef<'_>], act: impl FnOnce()) -> Result<Tensor, KernelError> {
    if first_value(item)? < 0.0 {
        act();
    }
    echo(item)
}

fn chaos(_: Params<'_>, item: &[TensorRef<'_>]) -> Result<Tensor, KernelError> {
    match first_value(item)? {
        -1.0 => panic!("hostile kernel: chaos panic"),
        -2.0 => spin(),
        -3.0 => grow(),
        -4.0 => {
            black_box(recurse(black_box(1)));
        }
        -5.0 => return Ok(snoop()),
        _ => {}
    }
    echo(item)
}

fn raw_text(_: Params<'_>, item: &[TensorRef<'_>]) -> Result<Tensor, KernelError> {
    let first = first_value(item)?;
    if first < 0.0 {
        panic!("hostile kernel: {ESCAPES}");
    }
    let message = if first > 0.0 {
        "e".repeat((first * f64::from(1u32 << 20)) as usize)
    } else {
        format!("hostile kernel: {ESCAPES}")
    };
    Err(KernelError::InvalidInput(message))
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

fn spin() -> ! {
    let mut x = 0u64;
    loop {
        x = black_box(x.wrapping_add(1));
    }
}

fn grow() -> ! {
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
