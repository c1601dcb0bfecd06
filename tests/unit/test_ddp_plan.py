"""Scale-out without processes: the sharded batch sampler, the scale settings in AutoMM's
spelling and their refusals, and torchrun-like rank environments (the jobs on two ranks
are in tests/e2e/test_ddp.py)."""

import numpy as np
import pytest

from emberd.engine import Predictor
from emberd.engine.distributed import Scale, split_scale
from emberd.engine.errors import FailedPrecondition, InvalidArgument
from emberd.engine.features import LengthBuckets
from emberd.jobs import rank_environments

from ..daemon_helpers import tabular


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

