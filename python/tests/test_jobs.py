"""Jobs through Redis (a private redis-server) and real `crunch worker` processes: round trips,
interoperation with the CLI both ways, failures, cancellation, a pack pushed from Python and
used by name, and the errors a client raises."""

from __future__ import annotations

import json

import numpy as np
import pytest

import crunch
from conftest import cli
from test_local import black_scholes_reference, contracts


def test_a_job_round_trip_through_a_worker(redis_url, workers):
    client = crunch.Client(redis_url)
    workers.start()
    c = contracts(3000)
    job = client.submit("black_scholes", c, batch_size=250)
    assert isinstance(job, crunch.Job) and job.kernel == "black_scholes"
    status = job.wait(progress=False, timeout=120)
    assert status.state == "done" and status.items_ok == 3000 and status.batches_done == 12
    out = job.results()
    # The same component bytes: bit-identical to the local run.
    assert np.array_equal(out, crunch.run("black_scholes", c))
    np.testing.assert_allclose(out, black_scholes_reference(c), rtol=1e-9, atol=1e-9)
    assert job.failures() == []
    # The standard pack went to the registry once, pinned by digest.
    assert job.spec()["pack_digest"] == crunch.STANDARD_DIGEST
    assert job.spec()["plan"] is None
    assert [p.tag for p in client.packs()] == ["crunch-standard:latest"]
    assert [j.id for j in client.jobs()] == [job.id]


def test_an_automatic_batch_size_follows_a_plan(redis_url, workers):
    client = crunch.Client(redis_url)
    workers.start()
    c = contracts(5000)
    job = client.submit("black_scholes", c)
    spec = job.spec()
    plan = spec["plan"]
    # The sample ran real items through the pack, and the batches are the plan's.
    assert plan["sample"]["items"] == 5000 and plan["sample"]["sampled"] > 0
    assert plan["sample"]["item_s"] > 0 and plan["sample"]["input_bytes"] > 0
    assert plan["estimate"]["kind"] == "local"
    assert spec["batch_size"] == plan["estimate"]["batch_size"]
    assert spec["batch_count"] == -(-5000 // spec["batch_size"])
    status = job.wait(progress=False, timeout=120)
    assert status.state == "done" and status.items_ok == 5000
    assert np.array_equal(job.results(), crunch.run("black_scholes", c))


def test_the_cli_reads_a_job_submitted_from_python(redis_url, workers, crunch_bin, tmp_path):
    client = crunch.Client(redis_url)
    workers.start()
    x = np.random.default_rng(1).normal(size=(500, 64))
    job = client.submit("describe", x, batch_size=64)
    job.wait(progress=False, timeout=120)
    status = cli(crunch_bin, "status", job.id, url=redis_url)
    assert "done" in status.stdout + status.stderr
    cli(crunch_bin, "results", job.id, "--output", str(tmp_path / "d.npy"), url=redis_url)
    assert np.array_equal(np.load(tmp_path / "d.npy"), job.results())


def test_python_reads_a_job_submitted_by_the_cli(redis_url, workers, crunch_bin, tmp_path):
    items = {"items": [[1.0, 2.0, 3.0, 4.0], [10.0, 20.0], [5.0]]}
    (tmp_path / "in.json").write_text(json.dumps(items))
    submitted = cli(crunch_bin, "submit", "--kernel", "percentile", "--param", "q=50,90", "--input", str(tmp_path / "in.json"), url=redis_url)
    job_id = submitted.stdout.strip()
    workers.start()
    job = crunch.Client(redis_url).job(job_id)
    assert job.kernel == "percentile"
    job.wait(progress=False, timeout=120)
    want = np.array([np.percentile(x, [50, 90]) for x in items["items"]])
    np.testing.assert_allclose(job.results(), want, rtol=1e-13)


def test_failed_items_of_a_job(redis_url, workers):
    client = crunch.Client(redis_url)
    workers.start()
    c = contracts(100)
    c[[10, 60], 4] = -0.1  # negative sigma: domain errors in two batches
    job = client.submit("black_scholes", c, batch_size=50)
    status = job.wait(progress=False, timeout=120)
    assert status.state == "done-with-failures" and status.items_failed == 2
    with pytest.raises(crunch.DomainError) as caught:
        job.results()
    assert caught.value.job == job.id and caught.value.item == 10 and len(caught.value.failures) == 2
    values, failures = job.results(errors="nan")
    assert np.isnan(values[[10, 60]]).all() and [f.item for f in failures] == [10, 60]
    assert [(f.item, f.batch) for f in job.failures()] == [(10, 0), (60, 1)]
    assert f"job {job.id}, kernel `black_scholes`, batch 0: item 10" in str(caught.value)
    assert job.results(errors="return").ok.sum() == 98


def test_a_pack_pushed_from_python_and_used_by_name(redis_url, workers, risk_pack):
    client = crunch.Client(redis_url)
    pushed = client.push_pack(risk_pack, "risk")
    assert pushed.tag == "risk:latest" and pushed.kernels == ["var", "ma_crossover"]
    assert pushed.digest.startswith("sha256:") and pushed.size == risk_pack.stat().st_size
    assert pushed in client.packs()
    workers.start()
    rng = np.random.default_rng(7)
    items = [(rng.normal(scale=0.01, size=(250, 3)), np.array([0.5, 0.3, 0.2])) for _ in range(40)]
    job = client.submit("var", items, {"confidence": 0.99}, pack="risk:latest", batch_size=8)
    job.wait(progress=False, timeout=120)
    assert job.spec()["pack_digest"] == pushed.digest and job.spec()["pack_path"] == ""
    var = job.results()
    assert np.array_equal(var, crunch.run("var", items, {"confidence": 0.99}, pack=risk_pack))
    losses = np.sort([-(r @ w) for r, w in items], axis=1)
    np.testing.assert_allclose(var[:, 0], losses[:, int(np.ceil(0.99 * 250)) - 1], rtol=1e-12)


def test_a_push_that_is_not_a_pack_is_refused(redis_url, tmp_path):
    client = crunch.Client(redis_url)
    bogus = tmp_path / "bogus.wasm"
    bogus.write_bytes(b"not wasm at all")
    with pytest.raises(crunch.InvalidInputError, match="not WebAssembly"):
        client.push_pack(bogus, "bogus")
    with pytest.raises(crunch.InvalidInputError, match="NAME"):
        client.push_pack(bogus, "two words")


def test_cancel_wait_timeout_and_notebook_view(redis_url):
    client = crunch.Client(redis_url)
    job = client.submit("black_scholes", contracts(10))  # no worker: it stays queued
    with pytest.raises(crunch.WaitTimeoutError):
        job.wait(progress=False, timeout=0.3)
    with pytest.raises(crunch.CrunchError, match="call wait"):
        job.results()
    html = job._repr_html_()
    assert "<progress value='0' max='1'" in html and "queued" in html
    assert job.cancel().state == "cancelled"
    with pytest.raises(crunch.JobCancelledError):
        job.wait(progress=False)
    with pytest.raises(crunch.JobFailedError):
        job.results()
    assert "cancelled" in repr(job)


def test_client_errors(redis_url):
    client = crunch.Client(redis_url)
    with pytest.raises(crunch.JobNotFoundError):
        client.job("0000000000000000000")
    with pytest.raises(crunch.InvalidInputError, match="not a job id"):
        client.job("{bad}")
    with pytest.raises(crunch.InvalidInputError, match="unknown kernel"):
        client.submit("black_sholes", contracts(3))
    with pytest.raises(crunch.InvalidInputError, match="batch_size"):
        client.submit("black_scholes", contracts(3), batch_size=0)
    with pytest.raises(crunch.InvalidInputError, match="push_pack"):
        client.submit("black_scholes", contracts(3), pack=b"\0asm")
    with pytest.raises(crunch.InvalidInputError, match="no items"):
        client.submit("black_scholes", np.empty((0, 6)))


def test_redis_unreachable():
    from conftest import free_port

    with pytest.raises(crunch.RedisUnavailableError) as caught:
        crunch.Client(f"redis://127.0.0.1:{free_port()}")
    assert isinstance(caught.value, ConnectionError)
