"""A Crunch client in plain Python: submits a job to Redis by docs/protocol.md (redis-py and
NumPy only), waits for the workers, reads the results and checks them.

    python crunch_client.py --redis redis://127.0.0.1:6379 --pack crunch_kernels.wasm

A `crunch worker` must be running against the same Redis, able to read the pack's path.
The example prices 2,000 European options with `black_scholes` and compares every price with a
NumPy closed form.
"""

import argparse
import hashlib
import json
import math
import os
import secrets
import struct
import sys
import time

import numpy as np
import redis

MAGIC = b"CRNCHBIN"
ERROR_KINDS = ["invalid-input", "domain", "unknown-kernel", "batch-failed"]


def encode_items(items):
    """Items (lists of float64 arrays) in Crunch binary."""
    out = [MAGIC, struct.pack("<IIQ", 1, 0, len(items))]
    for tensors in items:
        out.append(struct.pack("<BI", 0, len(tensors)))
        for t in tensors:
            t = np.asarray(t, dtype="<f8", order="C")  # keeps 0-d scalars 0-d
            out.append(struct.pack("<I", t.ndim) + struct.pack(f"<{t.ndim}I", *t.shape))
            out.append(t.tobytes())
    return b"".join(out)


def decode_results(blob):
    """Crunch binary results: a list of arrays, or (kind, message) tuples for failed items."""
    if blob[:8] != MAGIC:
        raise ValueError("not Crunch binary")
    version, _flags, count = struct.unpack_from("<IIQ", blob, 8)
    if version != 1:
        raise ValueError(f"unsupported version {version}")
    pos, results = 24, []
    for _ in range(count):
        tag = blob[pos]
        pos += 1
        if tag == 1:
            kind, length = struct.unpack_from("<BI", blob, pos)
            pos += 5
            results.append((ERROR_KINDS[kind], blob[pos:pos + length].decode()))
            pos += length
            continue
        (ntensors,) = struct.unpack_from("<I", blob, pos)
        pos += 4
        assert ntensors == 1, "a result holds one tensor"
        (rank,) = struct.unpack_from("<I", blob, pos)
        shape = struct.unpack_from(f"<{rank}I", blob, pos + 4)
        pos += 4 + 4 * rank
        n = math.prod(shape)
        results.append(np.frombuffer(blob, dtype="<f8", count=n, offset=pos).reshape(shape))
        pos += 8 * n
    return results


def submit(r, kernel, items, pack_path, params=None, batch_size=100, ttl=3600):
    """Writes spec, progress, batches and queue entries; returns the job id."""
    with open(pack_path, "rb") as f:
        digest = "sha256:" + hashlib.sha256(f.read()).hexdigest()
    now = int(time.time() * 1000)
    job = f"{now:011x}{secrets.randbits(32):08x}"
    k = lambda suffix: f"crunch:{{{job}}}:{suffix}"
    batches = [items[i:i + batch_size] for i in range(0, len(items), batch_size)]
    spec = {
        "protocol": "1", "job": job, "kernel": kernel, "pack_digest": digest,
        "pack_path": os.path.abspath(pack_path),
        "params": json.dumps({n: {"shape": list(np.shape(v)), "data": np.ravel(v).tolist()}
                              for n, v in (params or {}).items()}),
        "batch_count": len(batches), "item_count": len(items), "batch_size": batch_size,
        "ttl_seconds": ttl, "max_deliveries": 3, "batch_time_ms": 60000,
        "lease_ms": 130000, "created_ms": now,
    }
    pipe = r.pipeline(transaction=False)
    pipe.hset(k("spec"), mapping=spec)
    pipe.hset(k("progress"), mapping={
        "state": "submitting", "batch_count": len(batches), "item_count": len(items),
        "batches_done": 0, "batches_dead": 0, "items_ok": 0, "items_failed": 0})
    pipe.xgroup_create(k("queue"), "workers", id="0", mkstream=True)
    for key in ("spec", "progress", "queue"):
        pipe.expire(k(key), ttl)
    for b, batch in enumerate(batches):
        pipe.set(k(f"in:{b}"), encode_items(batch), ex=ttl)
        # Explicit entry ids (0-(B+1)): a repeat after a lost reply cannot queue a batch twice.
        pipe.xadd(k("queue"), {"batch": b, "attempt": 1}, id=f"0-{b + 1}")
    pipe.hset(k("progress"), "state", "queued")
    pipe.execute()
    r.zadd("crunch:jobs", {job: now})
    return job


def wait(r, job, timeout=120):
    """Polls the progress hash until the job reaches a final state; returns it."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        p = r.hgetall(f"crunch:{{{job}}}:progress")
        if p.get(b"state", b"").decode() in ("done", "done-with-failures", "failed", "cancelled"):
            return {key.decode(): value.decode() for key, value in p.items()}
        time.sleep(0.1)
    raise TimeoutError(f"job {job} did not finish in {timeout} s")


def results(r, job):
    """Every result in input order."""
    count = int(r.hget(f"crunch:{{{job}}}:spec", "batch_count"))
    blobs = r.mget([f"crunch:{{{job}}}:out:{b}" for b in range(count)])
    if any(blob is None for blob in blobs):
        raise RuntimeError(f"job {job} is not finished")
    return [res for blob in blobs for res in decode_results(blob)]


def norm_cdf(x):
    return 0.5 * np.vectorize(math.erfc)(-x / math.sqrt(2.0))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis", default=os.environ.get("CRUNCH_REDIS", "redis://127.0.0.1:6379"))
    parser.add_argument("--pack", required=True, help="the kernel pack component (.wasm)")
    parser.add_argument("--count", type=int, default=2000)
    args = parser.parse_args()

    rng = np.random.default_rng(7)
    n = args.count
    s, k = rng.uniform(50, 150, n), rng.uniform(50, 150, n)
    t, rate, sigma = rng.uniform(0.1, 2, n), rng.uniform(0, 0.05, n), rng.uniform(0.1, 0.6, n)
    call = (rng.uniform(size=n) < 0.5).astype(float)
    contracts = np.stack([s, k, t, rate, sigma, call], axis=1)

    r = redis.Redis.from_url(args.redis)
    job = submit(r, "black_scholes", [[row] for row in contracts], args.pack)
    print(f"submitted job {job}: {n} items")
    progress = wait(r, job)
    print(f"job {job}: {progress['state']}, {progress['items_ok']} ok, {progress['items_failed']} failed")
    out = results(r, job)
    failed = [res for res in out if isinstance(res, tuple)]
    if failed:
        sys.exit(f"{len(failed)} items failed, e.g. {failed[0]}")
    prices = np.array([res[0] for res in out])

    d1 = (np.log(s / k) + (rate + 0.5 * sigma**2) * t) / (sigma * np.sqrt(t))
    d2 = d1 - sigma * np.sqrt(t)
    disc = k * np.exp(-rate * t)
    expected = np.where(call == 1.0, s * norm_cdf(d1) - disc * norm_cdf(d2),
                        disc * norm_cdf(-d2) - s * norm_cdf(-d1))
    worst = np.max(np.abs(prices - expected) / np.maximum(np.abs(expected), 1e-8))
    print(f"largest relative difference from NumPy: {worst:.2e}")
    if not worst < 1e-9:
        sys.exit("prices differ from the NumPy closed form")
    print("ok")


if __name__ == "__main__":
    main()
