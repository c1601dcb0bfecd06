import os

import pytest
import torch

from emberd.engine.checkpoint_io import load_checkpoint, save_checkpoint
from emberd.engine.storage import read_json, read_tensors, write_json, write_tensors


def test_checkpoint_round_trip_keeps_structure_and_tensors(tmp_path):
    ck = {
        "state_dict": {"a.weight": torch.randn(3, 4), "b": torch.arange(5)},
        "optimizer_states": [
            {"state": {0: {"step": torch.tensor(7.0), "exp_avg": torch.ones(2)}}, "param_groups": [{"betas": (0.9, 0.999), "lr": 1e-4, "params": [0]}]}
        ],
        "loops": {"epoch": 3, "nan": float("inf"), "none": None, "flag": True},
    }
    save_checkpoint(ck, tmp_path / "x.ckpt")
    back = load_checkpoint(tmp_path / "x.ckpt")
    assert torch.equal(back["state_dict"]["a.weight"], ck["state_dict"]["a.weight"])
    assert back["optimizer_states"][0]["state"][0]["step"].item() == 7.0
    assert back["optimizer_states"][0]["param_groups"][0]["betas"] == (0.9, 0.999)
    assert back["loops"] == ck["loops"]


def test_checkpoint_refuses_objects_it_would_have_to_pickle(tmp_path):
    with pytest.raises(TypeError, match="without pickle"):
        save_checkpoint({"x": object()}, tmp_path / "x.ckpt")
    assert not os.listdir(tmp_path)  # no partial file left behind


def test_atomic_writes_leave_no_temp_files(tmp_path):
    write_json(tmp_path / "a.json", {"k": [1, 2]})
    write_json(tmp_path / "a.json", {"k": [3]})
    t = torch.randn(4)
    write_tensors(tmp_path / "t.safetensors", {"w": t, "tied": t})
    assert read_json(tmp_path / "a.json") == {"k": [3]}
    assert torch.equal(read_tensors(tmp_path / "t.safetensors")["tied"], t)
    assert sorted(os.listdir(tmp_path)) == ["a.json", "t.safetensors"]
