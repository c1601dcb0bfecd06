"""The job spec: a JSON round trip that keeps the registry's shape, strict reading (unknown
keys, wrong types, missing fields named), and specs in the shapes older daemons stored."""

import json
import sqlite3

import pytest

from emberd.jobspec import BatchSpec, JobSpec, JobSpecError, Launch
from emberd.registry import SCHEMA, Registry

# a Fit's spec as the daemon stores it today (services.training), in its key order
FIT = {
    "model_dir": "/r/models/m", "label": "label", "problem_type": "binary", "eval_metric": "acc",
    "train_path": "/r/datasets/a.parquet", "train_dataset": "a" * 64, "tuning_path": None, "time_limit": 30.0,
    "hyperparameters": {"optim.max_epochs": 2, "model.names": ["hf_text"]}, "seed": 3, "column_types": {},
    "continued": False, "scale": {"devices": 1, "num_nodes": 1, "strategy": "auto", "accelerator": "cpu"},
}
BATCH = {
    "model_dir": "/r/models/m", "model_name": "m", "version": 2, "data_path": "/data/t.csv", "with_proba": True,
    "artifacts_dir": "/r/artifacts", "artifact_id": "b" * 32,
}


@pytest.mark.parametrize("kind, stored", [("FIT", FIT), ("TRANSFER", FIT), ("RESUME", FIT), ("BATCH_PREDICT", BATCH)])
def test_round_trip_keeps_the_stored_json_byte_for_byte(kind, stored):
    spec = JobSpec.from_json(json.dumps(stored), kind=kind)
    assert spec.to_json() == json.dumps(stored)
    assert JobSpec.from_json(spec.to_json(), kind=kind) == spec
    assert (spec.train is None) == (kind == "BATCH_PREDICT")


def test_fields_read_typed():
    fit = JobSpec.from_dict(FIT, kind="FIT").training
    assert (fit.train_path, fit.seed, fit.continued, fit.scale["devices"]) == ("/r/datasets/a.parquet", 3, False, 1)
    batch = JobSpec.from_dict(BATCH, kind="BATCH_PREDICT").batch_predict
    assert (batch.version, batch.with_proba, batch.artifact_id) == (2, True, "b" * 32)
    with pytest.raises(JobSpecError, match="not a batch prediction"):
        _ = JobSpec.from_dict(FIT, kind="FIT").batch_predict


def test_unknown_keys_are_named():
    with pytest.raises(JobSpecError, match="unknown key 'learning_rate'") as e:
        JobSpec.from_dict({**FIT, "learning_rate": 0.1}, kind="FIT")
    assert e.value.field == "learning_rate"
    with pytest.raises(JobSpecError, match="unknown key 'label'"):  # a training key in a batch prediction
        JobSpec.from_dict({**BATCH, "label": "y"}, kind="BATCH_PREDICT")


@pytest.mark.parametrize(
    "key, value, what",
    [("seed", "3", "seed must be int"), ("seed", True, "seed must be int"), ("continued", 1, "continued must be bool"),
     ("time_limit", "30", "time_limit must be float"), ("hyperparameters", [], "hyperparameters must be dict"),
     ("column_types", {"a": 1}, "column_types must be dict"), ("train_path", 7, "train_path must be str")],
)
def test_wrong_types_are_named(key, value, what):
    with pytest.raises(JobSpecError, match=what) as e:
        JobSpec.from_dict({**FIT, key: value}, kind="FIT")
    assert e.value.field == key


def test_wrong_types_are_refused_when_built_in_code_too():
    with pytest.raises(JobSpecError, match="version must be int"):
        BatchSpec(**{**BATCH, "version": "2"})
    with pytest.raises(JobSpecError, match="torch_threads must be int"):
        Launch(torch_threads=1.5)  # type: ignore[arg-type]


def test_missing_required_fields_are_named():
    for key in ("model_dir", "label", "train_path"):
        with pytest.raises(JobSpecError, match=f"{key} is missing") as e:
            JobSpec.from_dict({k: v for k, v in FIT.items() if k != key}, kind="FIT")
        assert e.value.field == key
    with pytest.raises(JobSpecError, match="artifact_id is missing"):
        JobSpec.from_dict({k: v for k, v in BATCH.items() if k != "artifact_id"}, kind="BATCH_PREDICT")


def test_kind_and_section_must_agree():
    with pytest.raises(JobSpecError, match="kind must be one of"):
        JobSpec.from_dict(FIT, kind="TRAIN")
    with pytest.raises(JobSpecError, match="kind is missing"):  # a worker's SPEC.json names its kind
        JobSpec.from_dict(FIT)
    assert JobSpec.from_dict({**FIT, "kind": "FIT"}).kind == "FIT"
    with pytest.raises(JobSpecError, match="BatchSpec"):
        JobSpec("BATCH_PREDICT", train=JobSpec.from_dict(FIT, kind="FIT").train)
    with pytest.raises(JobSpecError, match="JSON object"):
        JobSpec.from_json("[1, 2]", kind="FIT")


def test_changes_are_validated_again():
    spec = JobSpec.from_dict(FIT, kind="FIT")
    moved = spec.with_train(train_path="/r/datasets/b.parquet")
    assert moved.training.train_path == "/r/datasets/b.parquet" and spec.training.train_path == "/r/datasets/a.parquet"
    with pytest.raises(JobSpecError, match="seed must be int"):
        spec.with_train(seed="1")


# ---- specs in the shapes earlier daemons stored ------------------------------------------------
FIRST_RELEASE_FIT = {k: v for k, v in FIT.items() if k not in ("continued", "scale")}  # before DDP and the fit plan
REBUILT_SUCCEEDED = {"rebuilt": True}  # recovery, from a version's lineage
REBUILT_INTERRUPTED = {"rebuilt": True, "model_dir": "/r/models/m", "scale": None}  # recovery, from run.json
WORKER_SPEC_JSON = {"kind": "FIT", "model_dir": "/m", "train_path": "/t.parquet", "label": "label", "time_limit": 30,
                    "hyperparameters": {"optim.max_epochs": 3, "env.devices": 2}, "seed": 0, "continued": False}


def test_older_shapes_load():
    old = JobSpec.from_dict(FIRST_RELEASE_FIT, kind="FIT").training
    assert old.continued is False and old.scale is None and old.train_dataset == "a" * 64
    rebuilt = JobSpec.from_dict(REBUILT_SUCCEEDED, kind="RESUME").training
    assert rebuilt.rebuilt and rebuilt.train_path is None and rebuilt.model_dir == ""
    interrupted = JobSpec.from_dict(REBUILT_INTERRUPTED, kind="FIT")
    assert interrupted.training.model_dir == "/r/models/m" and interrupted.training.train_path is None
    assert interrupted.to_dict()["rebuilt"] is True  # and it stays marked once written again
    worker = JobSpec.from_dict(WORKER_SPEC_JSON).training  # tests/e2e/test_ddp.py's SPEC.json
    assert worker.time_limit == 30 and worker.hyperparameters["env.devices"] == 2


def test_registry_reads_job_rows_an_older_daemon_wrote(tmp_path):
    path = tmp_path / "registry.sqlite"
    db = sqlite3.connect(path)
    db.executescript(SCHEMA)
    for id, kind, state, spec in [("j1", "FIT", "SUCCEEDED", FIRST_RELEASE_FIT), ("j2", "RESUME", "SUCCEEDED", REBUILT_SUCCEEDED),
                                  ("j3", "FIT", "INTERRUPTED", REBUILT_INTERRUPTED), ("j4", "BATCH_PREDICT", "SUCCEEDED", BATCH)]:
        db.execute("INSERT INTO jobs (id, model_name, kind, state, created_at, updated_at, spec) VALUES (?,?,?,?,?,?,?)",
                   (id, "m", kind, state, 0, 0, json.dumps(spec)))
    db.commit()
    db.close()
    r = Registry(path)
    assert r.job("j1").spec.training.label == "label"
    assert r.job("j3").spec.training.rebuilt
    assert r.job("j4").spec.batch_predict.artifact_id == "b" * 32
    new = r.create_job("j5", "other", JobSpec.from_dict(FIT, kind="TRANSFER"))
    assert new.kind == "TRANSFER" and new.spec == JobSpec.from_dict(FIT, kind="TRANSFER")
    r.close()
    db = sqlite3.connect(path)
    assert json.loads(db.execute("SELECT spec FROM jobs WHERE id='j5'").fetchone()[0]) == FIT  # stored as before
    db.close()


def test_the_worker_entry_point_refuses_a_bad_spec_file_naming_the_key(tmp_path, capsys):
    from emberd import worker

    path = tmp_path / "spec.json"
    path.write_text(json.dumps({**WORKER_SPEC_JSON, "epochs": 3}))
    assert worker.main([str(path)]) == 2
    assert "unknown key 'epochs'" in capsys.readouterr().err
