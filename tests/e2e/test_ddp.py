"""Scale-out with Lightning DDP: the sharded batch sampler, the scale settings and their
refusals (fast), and jobs whose ranks the daemon starts as separate processes (slow)."""

import json
import os
import signal
import subprocess
import sys

import grpc
import numpy as np
import pytest

from ember import Client, EmberRpcError
from ember.v1 import job_pb2
from emberd.engine import Predictor
from emberd.engine.distributed import Scale, params_digest, split_scale
from emberd.engine.errors import FailedPrecondition, InvalidArgument
from emberd.engine.features import LengthBuckets
from emberd.jobs import rank_environments
from emberd.server import create_server
from emberd.settings import Settings

from ..conftest import tree_state
from ..daemon_helpers import tabular


# ---- fast -------------------------------------------------------------------------------
@pytest.mark.parametrize("n,bs,world", [(1000, 32, 2), (100, 16, 3), (10, 8, 4)])
def test_each_rank_gets_its_own_shard_and_the_same_number_of_batches(n, bs, world):
    lengths = np.random.default_rng(0).integers(1, 60, size=n)
    one = LengthBuckets(lengths, bs, shuffle=True, seed=3)
    one.set_epoch(2)
    everything = list(one)
    shards = []
    for rank in range(world):
        s = LengthBuckets(lengths, bs, shuffle=True, seed=3, rank=rank, world=world)
        s.set_epoch(2)
        shards.append(list(s))
        assert len(shards[-1]) == len(s) == -(-len(everything) // world)
    # every batch of the one-process epoch is trained on; only the wrap-around repeats some
    seen = [tuple(b) for shard in shards for b in shard]
    assert set(seen) == {tuple(b) for b in everything}
    assert len(seen) - len(everything) < world
    if len(everything) >= world:  # different ranks, different batches
        assert shards[0][0] != shards[1][0]


def test_one_process_sampler_is_unchanged():
    lengths = np.random.default_rng(1).integers(1, 60, size=500)
    a, b = LengthBuckets(lengths, 32, shuffle=True, seed=5), LengthBuckets(lengths, 32, shuffle=True, seed=5, rank=0, world=1)
    assert list(a) == list(b)


def test_scale_settings_in_automm_spelling():
    scale, rest = split_scale({"env.devices": 2, "env.strategy": "ddp", "optim.lr": 1e-3})
    assert scale == Scale(devices=2, num_nodes=1, strategy="ddp", accelerator="cpu") and rest == {"optim.lr": 1e-3}
    assert split_scale({"optim.lr": 1e-3}) == (None, {"optim.lr": 1e-3})
    assert split_scale(Scale(devices=3).to_hyperparameters())[0] == Scale(devices=3)
    assert split_scale({"env.num_nodes": "2"})[0].world_size == 2
    with pytest.raises(InvalidArgument, match="ddp_spawn.*starts the ranks itself"):
        split_scale({"env.strategy": "ddp_spawn"})
    with pytest.raises(InvalidArgument, match="env.devices must be >= 0"):
        split_scale({"env.devices": -2})
    with pytest.raises(FailedPrecondition, match="GPU"):
        split_scale({"env.num_gpus": 64})


def test_rank_environments_look_like_torchrun():
    assert rank_environments(1) == [{}]
    envs = rank_environments(3)
    assert [e["RANK"] for e in envs] == [e["LOCAL_RANK"] for e in envs] == ["0", "1", "2"]
    assert {e["WORLD_SIZE"] for e in envs} == {"3"} and len({e["MASTER_PORT"] for e in envs}) == 1


def test_a_multiprocess_fit_outside_a_launched_group_is_refused_before_any_work(tmp_path):
    path = tmp_path / "m"
    with pytest.raises(FailedPrecondition, match="torchrun or SLURM"):
        Predictor(label="label", path=path).fit(tabular(), hyperparameters={"env.devices": 2})
    assert not path.exists()


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    d = create_server(Settings(port=0, root=str(tmp_path_factory.mktemp("emberd") / "root")))
    with Client(f"127.0.0.1:{d.port}") as c:
        yield c
    d.stop(1)


@pytest.mark.parametrize(
    "options,code,match",
    [
        ({"num_nodes": 2}, grpc.StatusCode.FAILED_PRECONDITION, "torchrun or SLURM"),
        ({"devices": 2, "hyperparameters": {"env.devices": 3}}, grpc.StatusCode.INVALID_ARGUMENT, "disagree"),
        ({"strategy": "fsdp"}, grpc.StatusCode.INVALID_ARGUMENT, "env.strategy"),
        ({"devices": -1}, grpc.StatusCode.INVALID_ARGUMENT, "env.devices"),
    ],
)
def test_bad_scale_requests_fail_the_call_and_create_nothing(client, options, code, match):
    with pytest.raises(EmberRpcError, match=match) as e:
        client.fit("refused", tabular(), label="label", **options)
    assert e.value.code == code
    assert "refused" not in {m.name for m in client.list_models()}


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


def test_a_daemon_indexes_the_models_written_into_its_root_without_it(tmp_path):
    """What a multi-node fit leaves: a finished predictor folder the registry never saw."""
    Predictor(label="label", path=tmp_path / "root" / "models" / "outside").fit(tabular(), hyperparameters={"optim.max_epochs": 1})
    d = create_server(Settings(port=0, root=str(tmp_path / "root")))
    try:
        with Client(f"127.0.0.1:{d.port}") as c:
            assert c.get_model("outside").current_version == 1
            assert c.evaluate("outside", tabular(seed=3))["acc"] > 0.6
    finally:
        d.stop(1)
