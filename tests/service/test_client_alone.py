"""The client without the daemon's stack: the engine and the ONNX runner load neither gRPC
nor torch, and ``ember-client[onnx]``, installed alone into a fresh venv (no torch), predicts
through a daemon and runs an exported bundle with onnxruntime, agreeing with the daemon."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from ember import Client
from ember.v1 import job_pb2
from emberd.server import create_server
from emberd.settings import Settings

from ..daemon_helpers import ROOT, tabular

FAST = {"optim.max_epochs": 3, "optim.lr": 1e-3}


def _loaded_after(code: str) -> set[str]:
    """The top-level modules a fresh interpreter of this venv holds after running ``code``."""
    probe = f"import sys\n{code}\nprint(' '.join(sorted({{m.split('.')[0] for m in sys.modules}} | set(m for m in sys.modules if m.startswith('ember.')))))"
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300, check=True)
    return set(r.stdout.split())


def test_the_engine_loads_no_grpc_and_no_client_rpc_code():
    """lint-imports sees the import statements; this sees what actually loads (a package's
    ``__init__`` included): the whole engine, export and training among it."""
    loaded = _loaded_after("import emberd.engine, emberd.engine.export, emberd.engine.training, emberd.engine.detection.data")
    assert "torch" in loaded and "ember.preprocess" in loaded
    assert not loaded & {"grpc", "ember.client", "ember.predictor", "ember.v1", "ember.onnx"}, loaded


def test_the_onnx_runner_loads_no_torch_and_no_grpc():
    loaded = _loaded_after("import ember.onnx, ember.preprocess")
    assert not loaded & {"torch", "grpc", "emberd", "lightning", "ember_kernels", "ember.client"}, loaded


RUN_IN_CLIENT_VENV = """
import json, sys
import pandas as pd
from ember import Client
from ember.onnx import OnnxPredictor

address, model, rows_path, bundle = sys.argv[1:]
rows = pd.read_parquet(rows_path)
with Client(address) as c:
    served = list(c.predict(model, rows).labels)
local = OnnxPredictor(bundle).predict(rows).tolist()
heavy = sorted({"torch", "lightning", "emberd", "ember_kernels"} & set(sys.modules))
print(json.dumps({"served": served, "onnx": local, "heavy": heavy}))
"""


@pytest.fixture(scope="module")
def client_venv(tmp_path_factory):
    """A fresh venv holding ``ember-client[onnx]`` alone, built from a copy of its folder
    (links dereferenced: the distribution builds standalone, outside the repository)."""
    base = tmp_path_factory.mktemp("client-alone")
    src = base / "ember-client"
    shutil.copytree(ROOT / "clients" / "python", src, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    subprocess.run([sys.executable, "-m", "venv", str(base / "venv")], check=True, timeout=300)
    py = base / "venv" / "bin" / "python"
    r = subprocess.run([str(py), "-m", "pip", "install", "-q", f"{src}[onnx]"], capture_output=True, text=True, timeout=1500, env=_clean_env())
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return py


def _clean_env() -> dict[str, str]:
    """This process's environment without PYTHONPATH (it may point at the source tree)."""
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


@pytest.mark.slow
def test_client_alone_predicts_and_runs_onnx_without_torch(client_venv, tmp_path):
    py = client_venv
    r = subprocess.run([str(py), "-c", "import torch"], capture_output=True, text=True, env=_clean_env())
    assert r.returncode != 0 and "No module named 'torch'" in r.stderr
    data_root = tmp_path / "data"
    data_root.mkdir()
    daemon = create_server(Settings(port=0, root=str(tmp_path / "root"), data_roots=(str(data_root),)))
    try:
        address = f"127.0.0.1:{daemon.port}"
        rows = tabular(n=64, seed=3).drop(columns="label")
        rows.to_parquet(tmp_path / "rows.parquet")
        with Client(address) as c:
            job = c.wait(c.fit("tab", tabular(), label="label", time_limit=30, hyperparameters=FAST), progress=False)
            assert job.state == job_pb2.JOB_STATE_SUCCEEDED, job.error
            c.download(c.export("tab", parity_data=rows).id, tmp_path / "bundle")
            ours = list(c.predict("tab", rows).labels)
        (tmp_path / "run.py").write_text(RUN_IN_CLIENT_VENV)
        args = [str(tmp_path / "run.py"), address, "tab", str(tmp_path / "rows.parquet"), str(tmp_path / "bundle")]
        r = subprocess.run([str(py), *args], capture_output=True, text=True, timeout=300, env=_clean_env())
        assert r.returncode == 0, r.stderr[-3000:]
        got = json.loads(r.stdout.strip().splitlines()[-1])
        assert got["heavy"] == []
        assert got["served"] == ours and got["onnx"] == ours
        assert len(set(ours)) == 2  # both classes: agreement is not a constant answer
        # the client's console script, installed with it
        cli = subprocess.run([str(py.parent / "ember"), "onnx-predict", str(tmp_path / "bundle"), str(tmp_path / "rows.parquet")],
                             capture_output=True, text=True, timeout=300, env=_clean_env())
        assert cli.returncode == 0, cli.stderr[-3000:]
        assert cli.stdout.split() == ours
    finally:
        daemon.stop(1)
