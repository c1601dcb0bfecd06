"""Dynamic batching (issue 15) through a real daemon and a real tabular model: concurrent
Predict calls on one warm version are coalesced, each caller gets exactly its own rows'
results (equal to a call made alone), a caller that went away is never computed, and a bad
call fails alone. The test holds the model's lock to make the calls queue up together."""

from __future__ import annotations

import json
import threading
import time

import grpc
import numpy as np
import pytest

from ember import Client, EmberRpcError
from ember.client import _call
from ember.v1 import job_pb2, table_pb2
from ember.v1 import model_service_pb2 as model_pb
from emberd.server import create_server
from emberd.settings import Settings

from ..daemon_helpers import tabular

FAST = {"optim.max_epochs": 3, "optim.lr": 1e-3, "env.eval_batch_size": 8}


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    d = create_server(Settings(port=0, root=str(tmp_path_factory.mktemp("batching")), batch_max_rows=64, batch_max_delay_ms=5))
    c = Client(f"127.0.0.1:{d.port}")
    job = c.wait(c.fit("tab", tabular(), label="label", time_limit=60, hyperparameters=FAST), progress=False)
    assert job.state == job_pb2.JOB_STATE_SUCCEEDED, job.error
    rows = tabular(64, seed=5).drop(columns="label")
    alone = [c.predict("tab", rows.iloc[i : i + 1 + i % 3], probabilities=True) for i in range(16)]  # sequential: no batching
    yield {"daemon": d, "client": c, "rows": rows, "alone": alone, "entry": d.app.cache.get("tab", 1)}
    c.close()
    d.stop(0)


def batches(d) -> tuple[float, float]:
    """(batches run, calls in them) from the daemon's own metrics."""
    text = d.metrics.text().decode()
    get = lambda name: float(next(line.split()[-1] for line in text.splitlines() if line.startswith(name + " ")))  # noqa: E731
    return get("ember_batch_calls_count"), get("ember_batch_calls_sum")


def concurrently(env, calls: list, queued: int, while_held=lambda: None) -> tuple[list, list]:
    """Run ``calls`` (each a function of a Client) in threads while the model's lock is held,
    until ``queued`` slices wait in its queue (then ``while_held()``); then let the batch go.
    Their results and errors (EmberRpcError, or grpc.RpcError from a raw stub), in order."""
    entry = env["entry"]
    results, errors = [None] * len(calls), [None] * len(calls)

    def go(i: int) -> None:
        with Client(f"127.0.0.1:{env['daemon'].port}") as cc:
            try:
                results[i] = calls[i](cc)
            except (EmberRpcError, grpc.RpcError) as e:
                errors[i] = e

    threads = [threading.Thread(target=go, args=(i,)) for i in range(len(calls))]
    with entry.lock:
        for t in threads:
            t.start()
        deadline = time.monotonic() + 30
        while entry.batcher.queued() < queued and time.monotonic() < deadline:
            time.sleep(0.01)
        waiting = entry.batcher.queued()
        while_held()
    for t in threads:
        t.join(60)
    assert waiting == queued, f"{waiting} slices queued, expected {queued}"
    return results, errors


def own_rows(env, i: int):
    """Call ``i``: rows i .. i + i % 3 (1 to 3 rows), as ``env["alone"][i]`` predicted them."""
    return lambda cc: cc.predict("tab", env["rows"].iloc[i : i + 1 + i % 3], probabilities=True)


def assert_own_rows(env, results, errors, which: list[int]) -> None:
    for k, i in enumerate(which):
        assert errors[k] is None, errors[k]
        got, want = results[k], env["alone"][i]
        assert list(got.labels) == list(want.labels)
        np.testing.assert_allclose(np.asarray(got.probabilities), np.asarray(want.probabilities), rtol=0, atol=1e-6)


def test_concurrent_calls_are_coalesced_and_each_gets_its_own_rows(env):
    before = batches(env["daemon"])
    results, errors = concurrently(env, [own_rows(env, i) for i in range(16)], queued=16)
    assert_own_rows(env, results, errors, list(range(16)))
    after = batches(env["daemon"])
    ran, calls = after[0] - before[0], after[1] - before[1]
    assert calls == 16 and ran < 16, f"{calls} calls in {ran} batches: nothing was coalesced"


def test_concurrent_embeds_are_coalesced_too(env):
    c, rows = env["client"], env["rows"]
    alone = [c.embed("tab", rows.iloc[i : i + 2]) for i in range(6)]
    before = batches(env["daemon"])
    results, errors = concurrently(env, [lambda cc, i=i: cc.embed("tab", rows.iloc[i : i + 2]) for i in range(6)], queued=6)
    assert errors == [None] * 6
    for got, want in zip(results, alone):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
    assert batches(env["daemon"])[0] - before[0] < 6


def test_a_caller_that_went_away_is_never_computed_and_the_others_are_served(env):
    d, c = env["daemon"], env["client"]
    before = batches(d)
    req = model_pb.PredictRequest(model_name="tab", data=c.rows(env["rows"].head(40)))
    expired = lambda cc: cc.models.Predict(req, metadata=cc._md, timeout=0.5)  # noqa: E731
    calls = [own_rows(env, 0), own_rows(env, 1), expired, own_rows(env, 2), own_rows(env, 3)]
    results, errors = concurrently(env, calls, queued=5, while_held=lambda: time.sleep(1.5))  # past the 0.5 s deadline
    assert errors[2] is not None and errors[2].code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert_own_rows(env, results[:2] + results[3:], errors[:2] + errors[3:], [0, 1, 2, 3])
    after = batches(d)
    assert after[1] - before[1] == 4, "the expired call's slice was computed"


def test_a_bad_call_among_good_ones_fails_alone(env):
    rows = env["rows"].head(3).to_dict(orient="records")
    rows[1]["x"] = "lots"
    bad = model_pb.PredictRequest(model_name="tab", data=table_pb2.TableData(json_records=json.dumps(rows)))
    calls = [own_rows(env, 0), own_rows(env, 1), lambda cc: _call(cc.models.Predict, bad, metadata=cc._md), own_rows(env, 2),
             lambda cc: cc.predict("tab", env["rows"].drop(columns="color").head(2)), own_rows(env, 3)]
    results, errors = concurrently(env, calls, queued=4, while_held=lambda: time.sleep(0.5))  # the bad calls never queue
    assert errors[2].code == grpc.StatusCode.INVALID_ARGUMENT and "numeric column 'x'" in errors[2].message
    assert errors[4].code == grpc.StatusCode.INVALID_ARGUMENT and "color" in errors[4].message
    assert_own_rows(env, [results[i] for i in (0, 1, 3, 5)], [errors[i] for i in (0, 1, 3, 5)], [0, 1, 2, 3])
