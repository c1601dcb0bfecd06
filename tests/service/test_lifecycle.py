"""A version's life after it is published: aliases (Predict/Evaluate/Export by alias,
rollback), DeleteVersion and its refusals, retention (keep_versions), DeleteModel and
DeleteDataset freeing disk, DATA_LOSS for weights deleted behind the daemon's back (fast:
tabular models)."""

from __future__ import annotations

import json

import grpc
import numpy as np
import pytest

from ember import Client, EmberRpcError
from ember.v1 import dataset_service_pb2 as ds_pb
from ember.v1 import job_pb2
from ember.v1 import model_service_pb2 as model_pb
from emberd.recovery import check
from emberd.server import create_server
from emberd.settings import Settings

from ..daemon_helpers import tabular

FAST = {"optim.max_epochs": 3, "optim.lr": 1e-3}
ROWS = tabular(seed=9)


def _fit(c: Client, name: str, seed: int, **kw) -> job_pb2.Job:
    job = c.wait(c.fit(name, tabular(seed=seed), time_limit=30, hyperparameters=FAST, **kw), progress=False)
    assert job.state == job_pb2.JOB_STATE_SUCCEEDED, job.error
    return job


def _code(fn) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(EmberRpcError) as e:
        fn()
    return e.value.code, e.value.message


@pytest.fixture(scope="module")
def daemon(shared_daemon):
    return shared_daemon


@pytest.fixture(scope="module")
def client(daemon):
    with Client(f"127.0.0.1:{daemon.port}") as c:
        yield c


@pytest.fixture(scope="module")
def three(client):
    """A model with versions 1, 2 and 3."""
    for seed in range(3):
        _fit(client, "life", seed, label="label")
    return "life"


def test_aliases_route_serving_and_move_for_rollback(client, three):
    x = ROWS.drop(columns="label")
    m = client.set_alias(three, "production", 2)
    assert dict(m.aliases) == {"production": 2} and m.current_version == 3
    assert client.predict(three, x, alias="production").version == 2
    assert client.predict(three, x, alias="latest").version == 3 and client.predict(three, x).version == 3
    r = client.models.Evaluate(model_pb.EvaluateRequest(model_name=three, alias="production", data=client.rows(ROWS)))
    assert r.version == 2 and dict(r.scores) == client.evaluate(three, ROWS, version=2)
    assert np.array_equal(client.embed(three, x, alias="production"), client.embed(three, x, version=2))
    client.set_alias(three, "production", 1)  # rollback
    assert client.predict(three, x, alias="production").version == 1
    assert dict(client.get_model(three).aliases) == {"production": 1}
    assert _code(lambda: client.set_alias(three, "latest", 1))[0] == grpc.StatusCode.INVALID_ARGUMENT
    assert _code(lambda: client.set_alias(three, "-bad", 1))[0] == grpc.StatusCode.INVALID_ARGUMENT
    assert _code(lambda: client.set_alias(three, "canary", 9))[0] == grpc.StatusCode.NOT_FOUND
    assert _code(lambda: client.set_alias("nobody", "canary", 1))[0] == grpc.StatusCode.NOT_FOUND
    code, msg = _code(lambda: client.predict(three, x, alias="nope"))
    assert code == grpc.StatusCode.NOT_FOUND and "production" in msg
    assert _code(lambda: client.predict(three, x, version=2, alias="production"))[0] == grpc.StatusCode.INVALID_ARGUMENT
    assert _code(lambda: client.delete_alias(three, "nope"))[0] == grpc.StatusCode.NOT_FOUND
    assert dict(client.delete_alias(three, "production").aliases) == {}


def test_delete_version_refuses_named_versions_and_frees_its_folder(client, three, daemon):
    root = daemon.app.settings.root_path
    client.set_alias(three, "keep", 1)
    code, msg = _code(lambda: client.delete_version(three, 1))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "'keep'" in msg
    code, msg = _code(lambda: client.delete_version(three, 3))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "'latest'" in msg
    assert _code(lambda: client.delete_version(three, 7))[0] == grpc.StatusCode.NOT_FOUND
    client.predict(three, ROWS.drop(columns="label"), version=2)  # warm in the cache
    client.delete_version(three, 2)
    assert [v.version for v in client.get_model(three).versions] == [1, 3]
    assert not (root / "models" / three / "versions" / "0002").exists()
    assert f"{three}@2" not in client.stats().cached
    assert _code(lambda: client.predict(three, ROWS.drop(columns="label"), version=2))[0] == grpc.StatusCode.NOT_FOUND
    assert check(root) == []
    client.delete_alias(three, "keep")


def test_missing_weights_are_data_loss_and_delete_model_frees_disk(client, daemon):
    root = daemon.app.settings.root_path
    _fit(client, "frail", 5, label="label")
    x = ROWS.drop(columns="label")
    client.predict("frail", x)  # warm
    art = client.dump("frail")
    weights = root / "models" / "frail" / "versions" / "0001" / "model.safetensors"
    weights.unlink()  # behind the daemon's back
    code, msg = _code(lambda: client.predict("frail", x))
    assert code == grpc.StatusCode.DATA_LOSS and str(weights) in msg
    assert "frail@1" not in client.stats().cached
    assert (root / "artifacts" / art.id).is_dir()
    client.delete_model("frail")
    assert not (root / "models" / "frail").exists() and not (root / "artifacts" / art.id).exists()
    assert not [p for p in root.rglob(".*") if ".deleted" in p.name]
    assert _code(lambda: client.download(art.id, root.parent / "x"))[0] == grpc.StatusCode.NOT_FOUND


def test_delete_dataset_frees_its_file(client, daemon):
    root = daemon.app.settings.root_path
    id = client.upload(tabular(seed=77))
    assert any(p.name.startswith(id) for p in (root / "datasets").iterdir())
    client.datasets.DeleteDataset(ds_pb.DeleteDatasetRequest(id=id))
    assert not any(id in p.name for p in (root / "datasets").iterdir())


def test_retention_keeps_the_newest_the_current_and_the_aliased(tmp_path):
    d = create_server(Settings(port=0, root=str(tmp_path / "root"), keep_versions=1))
    try:
        with Client(f"127.0.0.1:{d.port}") as c:
            _fit(c, "kept", 0, label="label")
            c.set_alias("kept", "production", 1)
            _fit(c, "kept", 1)
            assert [v.version for v in c.get_model("kept").versions] == [1, 2]  # 1 is aliased
            _fit(c, "kept", 2)
            assert [v.version for v in c.get_model("kept").versions] == [1, 3]
            assert sorted(p.name for p in (tmp_path / "root" / "models" / "kept" / "versions").iterdir()) == ["0001", "0003"]
            assert not (tmp_path / "root" / "models" / "kept" / "run" / "last.ckpt").exists()
            assert c.predict("kept", ROWS.drop(columns="label"), alias="production").version == 1
    finally:
        d.stop(1)


@pytest.mark.node
def test_node_client_names_versions_and_deletes_them(client, three, daemon):
    """The Node client's SetAlias / Predict by alias / DeleteVersion / DeleteAlias."""
    from ..daemon_helpers import node

    script = """
const { Client } = require('./lib/client');
const [address, model] = process.argv.slice(1);
const c = new Client(address);
(async () => {
  const out = {};
  out.aliases = (await c.setAlias(model, 'blue', 1)).aliases;
  out.version = (await c.predict(model, [{ x: 0.5, x2: 0.1, color: 'red' }], { alias: 'blue' })).version;
  try { await c.deleteVersion(model, 1); out.refused = 'no'; } catch (e) { out.refused = e.codeName; }
  out.after = (await c.deleteAlias(model, 'blue')).aliases;
  console.log(JSON.stringify(out));
})().catch((e) => console.log(`${e.codeName}: ${e.details}`)).finally(() => c.close());
"""
    r = node("-e", script, f"127.0.0.1:{daemon.port}", three, timeout=60)
    assert json.loads(r.stdout.strip().splitlines()[-1]) == {"aliases": {"blue": 1}, "version": 1, "refused": "FAILED_PRECONDITION", "after": {}}, r


def test_cli_aliases_and_delete_version(client, three, daemon, tmp_path, capsys):
    from ember.cli import main

    addr = ["--address", f"127.0.0.1:{daemon.port}"]
    rows = tmp_path / "rows.csv"
    ROWS.drop(columns="label").head(3).to_csv(rows, index=False)
    assert main([*addr, "alias", three, "green", "1"]) == 0 and "green=v1" in capsys.readouterr().out
    assert main([*addr, "models"]) == 0 and "green=v1" in capsys.readouterr().out
    assert main([*addr, "predict", three, str(rows), "--alias", "green"]) == 0
    assert len(capsys.readouterr().out.split()) == 3
    assert main([*addr, "delete-version", three, "1"]) == 2 and "FAILED_PRECONDITION" in capsys.readouterr().err
    assert main([*addr, "unalias", three, "green"]) == 0 and "(no aliases)" in capsys.readouterr().out
