"""Failed items and bad arguments: the three errors modes, the exception hierarchy, whole
batches that trap or run out of time, and the arguments `crunch.run` refuses."""

from __future__ import annotations

import numpy as np
import pytest

import crunch

GOOD = [100.0, 100.0, 1.0, 0.05, 0.2, 1.0]


def contracts_with_bad_ones():
    """Ten contracts: item 3 out of the domain (negative sigma), item 7 invalid (is_call 2)."""
    c = np.tile(GOOD, (10, 1))
    c[:, 0] = np.linspace(80, 120, 10)
    c[3, 4] = -0.2
    c[7, 5] = 2.0
    return c


def test_errors_raise_names_the_first_failed_item_and_carries_all():
    c = contracts_with_bad_ones()
    with pytest.raises(crunch.DomainError) as caught:
        crunch.run("black_scholes", c, batch_size=4)
    err = caught.value
    assert isinstance(err, crunch.CrunchError) and isinstance(err, ValueError)
    assert err.item == 3 and err.kernel == "black_scholes"
    assert [(f.item, f.batch, f.kind) for f in err.failures] == [(3, 0, "domain"), (7, 1, "invalid-input")]
    assert "batch 0: item 3" in str(err) and "black_scholes" in str(err) and "2 items failed" in str(err)


def test_errors_nan_fills_failed_rows_and_returns_the_failures():
    c = contracts_with_bad_ones()
    values, failures = crunch.run("black_scholes", c, errors="nan", batch_size=4)
    good = crunch.run("black_scholes", np.delete(c, [3, 7], axis=0))
    assert values.shape == (10, 6)
    assert np.isnan(values[[3, 7]]).all()
    assert np.array_equal(np.delete(values, [3, 7], axis=0), good)
    assert [f.item for f in failures] == [3, 7]
    assert all(isinstance(f, crunch.Failure) and f.message for f in failures)


def test_errors_return_gives_results_with_both():
    c = contracts_with_bad_ones()
    result = crunch.run("black_scholes", c, errors="return")
    assert isinstance(result, crunch.Results) and len(result) == 10
    assert result.ok.tolist() == [i not in (3, 7) for i in range(10)]
    assert [f.kind for f in result.failures] == ["domain", "invalid-input"]
    with pytest.raises(crunch.DomainError):
        result.raise_for_failures()
    assert "8 ok, 2 failed" in repr(result)


def test_an_invalid_item_raises_invalid_input():
    with pytest.raises(crunch.InvalidInputError) as caught:
        crunch.run("black_scholes", [GOOD, GOOD[:5]])
    assert caught.value.item == 1 and caught.value.failures[0].kind == "invalid-input"


def test_a_failed_batch_fails_alone(hostile_pack):
    # The second batch traps; the others finish.
    x = np.arange(1.0, 13.0).reshape(12, 1)
    x[5, 0] = -1.0
    with pytest.raises(crunch.BatchFailedError) as caught:
        crunch.run("trap_on_negative", x, pack=hostile_pack, batch_size=4)
    assert caught.value.item == 4 and len(caught.value.failures) == 4
    assert "batch 1" in str(caught.value) and "trapped" in str(caught.value)
    values, failures = crunch.run("trap_on_negative", x, pack=hostile_pack, batch_size=4, errors="nan")
    assert [f.item for f in failures] == [4, 5, 6, 7]
    assert np.isnan(values[4:8]).all()
    assert np.array_equal(values[:4], x[:4]) and np.array_equal(values[8:], x[8:])


def test_the_time_limit_stops_a_batch(hostile_pack):
    x = np.array([[1.0], [-1.0], [2.0]])
    result = crunch.run("spin_on_negative", x, pack=hostile_pack, batch_size=1, time_limit=0.2, errors="return")
    assert result.ok.tolist() == [True, False, True]
    (failure,) = result.failures
    assert failure.kind == "batch-failed" and "time limit" in failure.message


def test_the_memory_limit_stops_a_batch(hostile_pack):
    x = np.array([[1.0], [-1.0]])
    result = crunch.run("grow_on_negative", x, pack=hostile_pack, batch_size=1, memory_limit=64, errors="return")
    assert result.ok.tolist() == [True, False]
    assert "memory limit" in result.failures[0].message


def test_unknown_kernels_and_bad_arguments_are_invalid_input():
    c = np.tile(GOOD, (2, 1))
    with pytest.raises(crunch.InvalidInputError, match="black_scholes"):
        crunch.run("black_sholes", c)
    for kwargs, words in [
        ({"errors": "ignore"}, "errors must be"),
        ({"threads": 0}, "threads"),
        ({"batch_size": 0}, "batch_size"),
        ({"time_limit": -1}, "time_limit"),
        ({"memory_limit": 0}, "memory_limit"),
        ({"pack": 3}, "pack must be"),
    ]:
        with pytest.raises(crunch.InvalidInputError, match=words):
            crunch.run("black_scholes", c, **kwargs)
    with pytest.raises(crunch.InvalidInputError, match="0-d"):
        crunch.run("norm_cdf", np.array(1.0))
    with pytest.raises(crunch.InvalidInputError, match="sequence of items"):
        crunch.run("norm_cdf", 1.0)
    with pytest.raises(crunch.InvalidInputError, match="item 1"):
        crunch.run("norm_cdf", [[1.0], ["x"]])
    with pytest.raises(crunch.InvalidInputError, match="complex"):
        crunch.run("norm_cdf", np.ones((2, 2), dtype=complex))
    with pytest.raises(crunch.InvalidInputError, match="params"):
        crunch.run("percentile", c, params=[5])
    with pytest.raises(crunch.CrunchError, match="no-such.wasm"):
        crunch.run("black_scholes", c, pack="no-such.wasm")


def test_a_parameter_error_is_invalid_input():
    x = np.ones((3, 4))
    with pytest.raises(crunch.InvalidInputError) as caught:
        crunch.run("percentile", x, {"q": 150})
    assert len(caught.value.failures) == 3


def test_failed_rows_are_nan_whichever_batch_finishes_first():
    c = np.tile(GOOD, (40, 1))
    c[:10, 4] = -0.2  # the whole first batch fails
    values, failures = crunch.run("black_scholes", c, batch_size=10, threads=2, errors="nan")
    assert values.shape == (40, 6) and np.isnan(values[:10]).all() and not np.isnan(values[10:]).any()
    assert [f.batch for f in failures] == [0] * 10
    c[:, 4] = -0.2  # every item fails: no shape to fill, one None per item
    values, failures = crunch.run("black_scholes", c, batch_size=10, errors="nan")
    assert values == [None] * 40 and len(failures) == 40
