# Every developer task; CI runs the same recipes (see .ci/run). `just --list` shows them all.

set shell := ["bash", "-euo", "pipefail", "-c"]

target := env_var_or_default("CARGO_TARGET_DIR", justfile_directory() / "target")
components := target / "wasm32-wasip2/component"
pack := components / "crunch_kernels.wasm"
crunch := target / "release/crunch"
demo_data := target / "release/examples/demo_data"
py_env := target / "py-env"
# Tools the recipes install into the project's own Python environment and call by path, so
# that nothing depends on what is on PATH (a pyenv Python puts no shim there until `pyenv rehash`).
cargo_lambda := py_env / "bin/cargo-lambda"
demo := target / "demo"

# List the recipes.
default:
    @just --list

# Add the wasm32-wasip2 target (rust-toolchain.toml names it; this makes sure it is there).
setup:
    @rustup target list --installed | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2

# Also the test components (the hostile pack and its two list-kernels variants) and the example
# pack (v1 and v2).
# Build the kernel pack component and the host, and print the pack's size.
build: setup
    cargo build --profile component --target wasm32-wasip2 -p crunch-hostile-kernels --features bad-names
    cp {{components}}/crunch_hostile_kernels.wasm {{components}}/crunch_hostile_bad_names.wasm
    cargo build --profile component --target wasm32-wasip2 -p crunch-hostile-kernels --features endless-list
    cp {{components}}/crunch_hostile_kernels.wasm {{components}}/crunch_hostile_endless_list.wasm
    cargo build --profile component --target wasm32-wasip2 -p crunch-kernels -p crunch-hostile-kernels
    cargo build --profile component --target wasm32-wasip2 -p crunch-example-risk
    cp {{components}}/crunch_example_risk.wasm {{components}}/crunch_example_risk_v1.wasm
    cargo build --profile component --target wasm32-wasip2 -p crunch-example-risk --features v2
    cp {{components}}/crunch_example_risk.wasm {{components}}/crunch_example_risk_v2.wasm
    cargo build --release -p crunch --bins --examples
    @echo "kernel pack: {{pack}} ($(stat -c %s {{pack}}) bytes)"

# The project's own Python environment (target/py-env): test and build tools go there.
venv:
    @test -x {{py_env}}/bin/python || python3 -m venv {{py_env}}

# redis-py, NumPy and SciPy (the Python example, the baselines); maturin, pytest, tqdm (the package).
# A Python virtualenv (target/py-env) with what the Python parts need.
py-env: venv
    {{py_env}}/bin/python -m pip install --quiet --disable-pip-version-check -r examples/python/requirements.txt -r bench/python/requirements.txt -r python/requirements-dev.txt

# The build embeds the standard kernel pack, which `build` has just built.
# Build the `crunch` Python package (release) into the project's venv.
py-dev: build py-env
    VIRTUAL_ENV={{py_env}} CRUNCH_STANDARD_PACK={{pack}} {{py_env}}/bin/maturin develop --release --quiet -m python/Cargo.toml

# abi3: one wheel for CPython 3.9 and later; it carries the standard kernel pack.
# Build the Python package's wheel into target/wheels and print its size.
wheel: build py-env
    rm -f {{target}}/wheels/crunch-*.whl
    CRUNCH_STANDARD_PACK={{pack}} {{py_env}}/bin/maturin build --release --quiet -m python/Cargo.toml --out {{target}}/wheels
    @for w in {{target}}/wheels/crunch-*.whl; do echo "wheel: $w ($(stat -c %s $w) bytes)"; done

# No cargo or rustc on PATH, an empty compiled-pack cache: pip and the wheel alone.
# Install the wheel into a fresh venv and price options with it.
wheel-check: wheel
    #!/usr/bin/env bash
    set -euo pipefail
    venv={{target}}/wheel-check
    rm -rf "$venv" && python3 -m venv "$venv"
    export PATH="$venv/bin:/usr/bin:/bin" CRUNCH_CACHE_DIR="$venv/cache"
    unset CARGO_HOME RUSTUP_HOME RUSTUP_TOOLCHAIN
    ! command -v cargo && ! command -v rustc
    pip install --quiet --disable-pip-version-check {{target}}/wheels/crunch-*.whl
    cd "$venv" && python -c 'import numpy as np, crunch; arr = np.array([[100.0, 100.0, 1.0, 0.05, 0.2, 1.0], [100.0, 110.0, 0.5, 0.01, 0.3, 0.0]]); out = crunch.run("black_scholes", arr); print(crunch.__version__, crunch.__file__); print(out); assert abs(out[0, 0] - 10.450583572185565) < 1e-12'

# redis-server and redis-cli come from apt-get when missing; cargo-lambda (its Runtime API
# emulator) is installed into target/py-env.
# Install what the tests run besides Rust.
test-deps: py-env lambda-tools
    #!/usr/bin/env bash
    set -euo pipefail
    if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
        command -v apt-get >/dev/null || { echo "install redis-server and redis-cli (Redis 6.2+)"; exit 1; }
        SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
        $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq redis-server
    fi

# Install cargo-lambda into target/py-env (called by path, never from PATH).
lambda-tools: venv
    @test -x {{cargo_lambda}} || {{py_env}}/bin/python -m pip install --quiet --disable-pip-version-check cargo-lambda

# Also ziglang, cargo-lambda's linker for cross builds, into target/py-env.
cross-tools: lambda-tools
    @{{py_env}}/bin/python -m ziglang version >/dev/null 2>&1 || {{py_env}}/bin/python -m pip install --quiet --disable-pip-version-check ziglang

# Unit tests, golden vectors through the component, CLI, Redis jobs (private redis-server
# processes), registry and hot swap, sandbox and chaos, the bad-input matrix, the Python example,
# the Lambda bootstrap under cargo-lambda's emulator, then the Python package's pytest suite.
# Run every test.
test: build py-env test-deps py-dev
    CRUNCH_PYTHON={{py_env}}/bin/python CRUNCH_CARGO_LAMBDA={{cargo_lambda}} cargo test --release --workspace --exclude crunch-python
    {{py_env}}/bin/python -m pytest python/tests -q

# 1,000,000 black_scholes items, then 100,000 implied_vol items, through `crunch run`.
demo: build
    mkdir -p {{demo}}
    {{demo_data}} contracts --count 1000000 --output {{demo}}/contracts.crb
    {{crunch}} run --kernel black_scholes --input {{demo}}/contracts.crb --output {{demo}}/greeks.crb
    {{demo_data}} implied-vol-inputs --contracts {{demo}}/contracts.crb --greeks {{demo}}/greeks.crb --count 100000 --output {{demo}}/iv-inputs.crb
    {{crunch}} run --kernel implied_vol --input {{demo}}/iv-inputs.crb --output {{demo}}/implied-vols.crb
    {{demo_data}} show --contracts {{demo}}/contracts.crb --greeks {{demo}}/greeks.crb --implied-vols {{demo}}/implied-vols.crb

# A private redis-server on a free port; chromium comes from apt-get when missing.
# A real job's report page (target/report-demo/report.html) and its screenshot by headless Chromium (report.png).
report-demo: build
    #!/usr/bin/env bash
    set -euo pipefail
    out={{target}}/report-demo
    mkdir -p "$out"
    chrome=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
    if [ -z "$chrome" ]; then
        SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
        $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium
        chrome=$(command -v chromium)
    fi
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no >"$out/redis.log" &
    redis=$!
    trap 'kill $redis' EXIT
    export CRUNCH_REDIS=redis://127.0.0.1:$port
    until redis-cli -p "$port" ping >/dev/null 2>&1; do sleep 0.1; done
    {{demo_data}} contracts --count 1000000 --output "$out/contracts.crb"
    {{crunch}} plan --kernel black_scholes --input "$out/contracts.crb" --workers 1,2
    job=$({{crunch}} submit --kernel black_scholes --input "$out/contracts.crb")
    for i in 1 2; do {{crunch}} worker --job "$job" --exit-when-done --threads 1 2>/dev/null & done
    wait %2 %3
    {{crunch}} status "$job"
    {{crunch}} report "$job" --output "$out/report.html"
    "$chrome" --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1100,1300 \
        --screenshot="$out/report.png" "file://$out/report.html" 2>/dev/null
    echo "screenshot: $out/report.png ($(stat -c %s "$out/report.png") bytes)"

# Invoke with `crunch submit ... --lambda _ --lambda-endpoint http://127.0.0.1:9000`.
# Run the bootstrap under cargo-lambda's Runtime API emulator, with Redis at $CRUNCH_REDIS.
lambda-watch: build lambda-tools
    #!/usr/bin/env bash
    set -euo pipefail
    {{cargo_lambda}} lambda watch --only-lambda-apis -A 127.0.0.1 -P 9000 &
    trap 'kill %1' EXIT
    sleep 2
    AWS_LAMBDA_RUNTIME_API=http://127.0.0.1:9000/.rt AWS_LAMBDA_FUNCTION_NAME=_ \
    AWS_LAMBDA_FUNCTION_VERSION=1 AWS_LAMBDA_FUNCTION_MEMORY_SIZE=2048 \
    CRUNCH_REDIS="${CRUNCH_REDIS:-redis://127.0.0.1:6379}" CRUNCH_TIME_BUDGET_MS="${CRUNCH_TIME_BUDGET_MS:-60000}" \
    {{target}}/release/bootstrap

# Build the example pack (examples/custom-kernel) and push it to the registry as risk:latest.
kernel-push: build
    {{crunch}} kernel push {{components}}/crunch_example_risk_v1.wasm --name risk --tag latest

# Benchmark: time to first batch on a cached kernel digest vs first use (compile), as ratios.
bench-cache: build
    {{target}}/release/examples/pack_cache_bench --pack {{pack}}

# cargo-fuzz; RUSTC_BOOTSTRAP lets the pinned stable toolchain take its -Z flags.
# Fuzz the Crunch binary decoder, job spec reader and Lambda event parser, SECONDS each.
fuzz seconds="120":
    #!/usr/bin/env bash
    set -euo pipefail
    command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
    for target in crb_decode job_spec drain_event; do
        mkdir -p fuzz/corpus/$target
        RUSTC_BOOTSTRAP=1 cargo fuzz run --sanitizer none $target fuzz/corpus/$target fuzz/seeds/$target \
            -- -max_total_time={{seconds}} -rss_limit_mb=4096 2>&1 | tail -n 3
    done

# cargo-lambda, with zig from PyPI for the cross build.
# Build the bootstrap zips for arm64 and x86_64 and print their sizes.
package: cross-tools
    #!/usr/bin/env bash
    set -euo pipefail
    # cargo-lambda finds zig through the environment's python3.
    export PATH="{{py_env}}/bin:$PATH"
    for arch in arm64 x86-64; do
        # Only the Lambda layer: the AWS SDK (for `crunch submit --lambda`) and the CLI stay out.
        {{cargo_lambda}} lambda build --profile lambda -p crunch --bin bootstrap --no-default-features --features lambda \
            --$arch --output-format zip --lambda-dir {{target}}/lambda/$arch
    done
    for zip in {{target}}/lambda/*/bootstrap/bootstrap.zip; do
        size=$(stat -c %s "$zip")
        echo "$zip: $size bytes"
        [ "$size" -le 8000000 ] || { echo "$zip is over 8 MB"; exit 1; }
    done

# cargo-lambda cross-builds `crunch` for arm64 (zig); qemu-user runs it.
# Check that arm64 (under qemu) and x86_64 give byte-identical outputs on every golden input, and
# run the vector math, SDK and kernel unit tests on arm64.
test-arm64: build cross-tools
    #!/usr/bin/env bash
    set -euo pipefail
    export PATH="{{py_env}}/bin:$PATH"
    if ! command -v qemu-aarch64 >/dev/null || [ ! -e /usr/aarch64-linux-gnu/lib/libc.so.6 ]; then
        SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
        $SUDO apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq qemu-user libc6-arm64-cross libgcc-s1-arm64-cross
    fi
    {{cargo_lambda}} lambda build --release --bin crunch --arm64 --lambda-dir {{target}}/lambda-cli/arm64
    CRUNCH_ARM64_BIN={{target}}/lambda-cli/arm64/crunch/bootstrap \
        cargo test --release -p crunch-tests --test arm64 -- --ignored --nocapture
    # The vector math's, the SDK's and the kernels' unit tests built natively for arm64 (the
    # NEON paths) and run under qemu; zig (cargo-lambda's) links them.
    rustup target list --installed | grep -qx aarch64-unknown-linux-gnu || rustup target add aarch64-unknown-linux-gnu
    linker={{target}}/aarch64-linux-gnu-cc
    printf '#!/bin/sh\nexec "%s" -m ziglang cc -target aarch64-linux-gnu.2.17 "$@"\n' "{{py_env}}/bin/python" > "$linker"
    chmod +x "$linker"
    CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER="$linker" \
        CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -L /usr/aarch64-linux-gnu" \
        cargo test --release --target aarch64-unknown-linux-gnu -p crunch-math -p crunch-abi -p crunch-kernels --lib

# Lint the AWS SAM template with cfn-lint.
deploy-lint: venv
    @test -x {{py_env}}/bin/cfn-lint || {{py_env}}/bin/python -m pip install --quiet --disable-pip-version-check cfn-lint
    {{py_env}}/bin/cfn-lint deploy/template.yaml

# Deploy with AWS SAM (needs AWS credentials and the SAM CLI; see docs/deploy.md).
deploy: package deploy-lint
    sam deploy --guided --template-file deploy/template.yaml --capabilities CAPABILITY_IAM

# Formatting and clippy (-D warnings) for the host and, on the wasm target, for the guests.
lint: setup
    cargo fmt --all --check
    cargo clippy --release --workspace --all-targets -- -D warnings
    # The library without the CLI and Lambda layers, as a program embedding it builds it.
    cargo clippy --release -p crunch --no-default-features --lib -- -D warnings
    cargo clippy --profile component --target wasm32-wasip2 -p crunch-math -p crunch-kernels -p crunch-hostile-kernels -p crunch-example-risk --all-targets -- -D warnings

# Validate the components with wasm-tools and show the kernel pack's WIT world.
validate: build
    @command -v wasm-tools >/dev/null || { echo "wasm-tools is missing: cargo install wasm-tools --locked"; exit 1; }
    wasm-tools validate {{pack}}
    wasm-tools validate {{components}}/crunch_hostile_kernels.wasm
    wasm-tools component wit {{pack}} | sed -n '/^world/,/^}/p'
    @echo "kernel pack: $(stat -c %s {{pack}}) bytes, valid"

# What CI runs: lint, tests, the wheel in a fresh venv, component validation, template lint.
ci: lint test wheel-check bench-build validate deploy-lint test-arm64

# Criterion first (each kernel through the component and natively, the fixed cost of a batch),
# then the report: NumPy/SciPy baselines on the same inputs, the Python package against the CLI,
# items/s through Redis (one and two workers, the Python worker), cold start, time inside
# kernels, sizes.
# Run the benchmarks; the report goes to target/bench/report.md and report.json.
bench: build py-env test-deps py-dev
    cargo bench -p crunch-bench --bench kernels
    cargo run --release -p crunch-bench -- --python {{py_env}}/bin/python

# mpmath at 40 digits is the reference; NumPy/SciPy on the same points are shown beside.
# Accuracy of the vector math (exp, log, normal CDF/density/quantile) in ulp, COUNT points each.
accuracy count="1000000": py-env
    cargo build --release -p crunch-math --example accuracy_eval
    {{py_env}}/bin/python math/accuracy/check.py --eval {{target}}/release/examples/accuracy_eval --count {{count}}

# Jobs the model expects one worker to finish in SECONDS; 3 runs per case, the median counts.
# crunch plan's predicted wall time against the measured one: local jobs, 1 and 2 workers, three kernels.
bench-plan seconds="3": build
    cargo run --release -p crunch-bench --bin plan_check -- --seconds {{seconds}}

# Build the benchmarks without running them (CI never fails on a figure).
bench-build:
    cargo bench -p crunch-bench --no-run
