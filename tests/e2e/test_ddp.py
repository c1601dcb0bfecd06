"""Scale-out with Lightning DDP: jobs whose ranks the daemon starts as separate processes, and a
worker in a group torchrun started (slow). The sampler and scale settings are in
tests/unit/test_ddp_plan.py, refused scale requests in tests/service/test_ddp_requests.py."""

import json
import os
import signal
import subprocess
import sys

import pytest

from ember import Client
from ember.v1 import job_pb2
from emberd.engine import Predictor
from emberd.engine.distributed import params_digest
from emberd.server import create_server
from emberd.settings import Settings

from ..conftest import tree_state
from ..daemon_helpers import tabular


# ---- slow: jobs on two processes ----------------------------------------------------------
def _notes(c: Client, job_id: str) -> list[dict]:
    """The engine's state notes of a job (JSON in the event message), in order."""
    out = []
    for r in c.watch(job_id):
        if r.event.kind == job_pb2.JOB_EVENT_KIND_STATE and r.event.message.startswith("{"):
            out.append(json.loads(r.event.message))
    return out


def _rank_reports(notes: list[dict]) -> dict[int, dict]:
    return {n["rank"]: n for n in notes if n["state"] == "rank_finished"}


@pytest.fixture(scope="module")
def daemon_root(tmp_path_factory):
    return tmp_path_factory.mktemp("ddp") / "root"


@pytest.fixture(scope="module")
def slow_client(daemon_root):
    d = create_server(Settings(port=0, root=str(daemon_root)))
    with Client(f"127.0.0.1:{d.port}") as c:
        yield c
    d.stop(1)


@pytest.mark.slow
def test_two_fits_in_a_row_each_on_two_ranks_in_sync(slow_client, daemon_root, shared_data):
    c = slow_client
    train = shared_data.sst2("train").sample(n=1200, random_state=0).reset_index(drop=True)
    tuning = shared_data.sst2("dev").iloc[:96]
    test = shared_data.sst2("test").iloc[:200]
    hp = {"optim.head_init_rows": 128, "env.eval_batch_size": 32}
    for i, part in enumerate((train.iloc[:600], train.iloc[600:])):
        job = c.wait(c.fit("sst", part, tuning, label="label", time_limit=30,
                           hyperparameters=hp, devices=2), progress=False)
        assert job.state == job_pb2.JOB_STATE_SUCCEEDED, job.error
        assert job.version == i + 1
        notes = _notes(c, job.id)
        started = next(n for n in notes if n["state"] == "ranks_started")
        assert started["world_size"] == 2 and len(set(started["pids"])) == 2
        ranks = _rank_reports(notes)
        assert set(ranks) == {0, 1} and {r["world_size"] for r in ranks.values()} == {2}
        assert ranks[0]["params_sha256"] == ranks[1]["params_sha256"]  # bit-identical weights
        # the published version holds exactly those weights, and loads like any other
        loaded = Predictor.load(daemon_root / "models" / "sst", version=job.version)
        assert params_digest(loaded._model.net) == ranks[0]["params_sha256"]
    acc = c.evaluate("sst", test)["acc"]
    assert acc > 0.65, acc
    assert list(c.predict("sst", test.drop(columns="label").iloc[:5]).labels) == [str(v) for v in loaded.predict(test.iloc[:5])]


@pytest.mark.slow
def test_killing_one_rank_interrupts_the_job_and_resume_finishes_on_both(slow_client, daemon_root):
    c = slow_client
    job = c.fit("killed", tabular(n=20000, seed=2), label="label", time_limit=25, devices=2,
                hyperparameters={"optim.max_epochs": 100, "env.batch_size": 16, "optim.checkpoint_interval_s": 1,
                                 "optim.val_check_interval": 0.02})
    pids = None
    for r in c.watch(job.id):
        if r.event.kind == job_pb2.JOB_EVENT_KIND_STATE and "ranks_started" in r.event.message:
            pids = json.loads(r.event.message)["pids"]
        if r.event.kind == job_pb2.JOB_EVENT_KIND_CHECKPOINT:
            break
    assert pids is not None
    os.kill(pids[1], signal.SIGKILL)
    after = c.wait(job, progress=False)
    assert after.state == job_pb2.JOB_STATE_INTERRUPTED, after.error
    assert "rank 1 of 2" in after.error and "Resume" in after.error
    for pid in pids:  # the other rank was stopped too: nothing waits on a dead peer
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    before = tree_state(daemon_root / "models" / "killed" / "versions")
    assert before == {}  # nothing published by the interrupted run

    resumed = c.wait(c.resume("killed"), progress=False)
    assert resumed.state == job_pb2.JOB_STATE_SUCCEEDED, resumed.error
    notes = _notes(c, resumed.id)
    assert next(n for n in notes if n["state"] == "training")["resumed"] is True
    ranks = _rank_reports(notes)
    assert set(ranks) == {0, 1} and ranks[0]["params_sha256"] == ranks[1]["params_sha256"]
    assert c.get_model("killed").current_version == 1
    assert c.evaluate("killed", tabular(seed=8))["acc"] > 0.7


@pytest.mark.slow
def test_the_worker_joins_a_group_that_torchrun_started(tmp_path):
    """The multi-node entry point: torchrun starts the ranks (here two on one machine; on
    several, the same command with --nnodes/--node-rank/--rdzv-endpoint on each)."""
    tabular().to_parquet(tmp_path / "train.parquet")
    spec = {"kind": "FIT", "model_dir": str(tmp_path / "m"), "train_path": str(tmp_path / "train.parquet"), "label": "label",
            "time_limit": 30, "hyperparameters": {"optim.max_epochs": 3, "env.devices": 2}, "seed": 0, "continued": False}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    run = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "emberd.worker", str(tmp_path / "spec.json")],
        capture_output=True, text=True, timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    notes = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    assert any(n.get("state") == "succeeded" and n["version"] == 1 for n in notes)
    ranks = _rank_reports([n for n in notes if n.get("kind") == "state"])
    assert set(ranks) == {0, 1} and ranks[0]["params_sha256"] == ranks[1]["params_sha256"]
    loaded = Predictor.load(tmp_path / "m")
    assert params_digest(loaded._model.net) == ranks[0]["params_sha256"]
    assert loaded.evaluate(tabular(seed=3))["acc"] > 0.7
