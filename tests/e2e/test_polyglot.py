"""Ember from other languages: the Node.js client (clients/node) runs the whole workflow
against a real daemon subprocess (slow), and what it printed and what the daemon holds
afterwards are checked here, the Node predictions against the Python client's. Reflection
and the Node download checks: tests/service/test_polyglot_api.py."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import threading

import numpy as np
import pandas as pd
import pytest

from ember import Client
from ember.v1 import dataset_service_pb2 as ds_pb
from ember.v1 import job_pb2

from ..daemon_helpers import NODE_CLIENT, free_port, node, start_daemon_process

ROWS = 300


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    root = tmp_path_factory.mktemp("emberd-node") / "root"
    port = free_port()
    proc = start_daemon_process(root, port)
    yield f"127.0.0.1:{port}", root
    proc.send_signal(signal.SIGTERM)
    proc.wait(30)


@pytest.mark.slow
@pytest.mark.node
def test_node_workflow_against_a_daemon(daemon, tmp_path):
    address, root = daemon
    args = ["--rows", ROWS, "--more-rows", ROWS, "--sts-rows", ROWS, "--time-limit", 20, "--chunk-bytes", 8192]
    run = node("workflow.js", "--address", address, "--out", str(tmp_path / "out"), *map(str, args), timeout=1200)
    print(run.stdout[-6000:], run.stderr[-2000:])
    assert run.returncode == 0, f"the Node workflow failed:\n{run.stderr}\n{run.stdout[-4000:]}"
    lines = run.stdout.splitlines()
    assert lines[-1].startswith("summary ")
    summary = json.loads(lines[-1].removeprefix("summary "))

    # what it printed: chunked uploads, the jobs' progress to their end, the refusals
    uploads = re.findall(r"^upload (\S+): (\d+) rows, (\d+) bytes \((\d+) chunks\)", run.stdout, re.M)
    assert [(name, int(rows)) for name, rows, _, _ in uploads] == [("sst2-train-1", ROWS), ("sst2-train-2", ROWS), ("stsb-train", ROWS)]
    assert all(int(chunks) == -(-int(size) // 8192) > 1 for _, _, size, chunks in uploads)
    assert re.search(r"^  \[\w{8}\] epoch \d+ step \d+ loss [\d.]+ ", run.stdout, re.M), "no training progress printed"
    assert re.search(r"^  \[\w{8}\] validation at step \d+: [\d.]+$", run.stdout, re.M)
    assert "fit sst2-node: SUCCEEDED -> version 1" in lines
    assert "continued fit sst2-node: SUCCEEDED -> version 2" in lines
    assert "transfer stsb-node: SUCCEEDED -> version 1" in lines
    assert any(line.startswith("bad request: Fit with label 'no_such_column' -> INVALID_ARGUMENT: label column 'no_such_column'") for line in lines)
    assert any(line.startswith("bad request: Predict with model 'no-such-model' -> NOT_FOUND:") for line in lines)

    with Client(address) as c:
        # the jobs ended well, the uploads are held as sent, the refused fit left nothing
        for step in ("fit", "continued_fit", "transfer"):
            assert c.get_job(summary[step]["id"]).state == job_pb2.JOB_STATE_SUCCEEDED
        for upload in ("train", "train_more", "sts_train"):
            ds = c.datasets.GetDataset(ds_pb.GetDatasetRequest(id=summary[upload]["id"])).dataset
            assert (ds.format, ds.num_rows, ds.size_bytes) == ("tsv", ROWS, summary[upload]["bytes"])
        assert sorted(m.name for m in c.list_models()) == ["sst2-node", "stsb-node"]

        # the continued fit made version 2 from version 1
        model = c.get_model("sst2-node")
        assert model.current_version == 2 and [(v.version, v.parent_version) for v in model.versions] == [(1, 0), (2, 1)]
        assert list(model.classes) == ["0", "1"]

        # Node's predictions are the dataset's labels and the Python client's, row for row
        pred = summary["predict"]
        assert pred["version"] == 1 and len(pred["labels"]) == 8 and set(pred["labels"]) <= {"0", "1"}
        py = c.predict("sst2-node", pd.DataFrame(pred["rows"]), version=1, probabilities=True)
        assert list(py.labels) == pred["labels"]
        np.testing.assert_allclose(np.asarray(py.probabilities), np.asarray(pred["probabilities"]), atol=1e-6)

        # the transfer is a new regression model on STS-B's score
        sts = c.get_model("stsb-node")
        assert (sts.problem_type, sts.label, sts.current_version) == ("regression", "score", 1)

    # the dump came down whole: the daemon's files, byte for byte, and transformers loads it
    dump = summary["dump"]
    paths = {f["path"] for f in dump["files"]}
    assert {"hf_text/config.json", "hf_text/model.safetensors"} <= paths
    for f in dump["files"]:
        local = (tmp_path / "out" / "dump" / f["path"]).read_bytes()
        assert hashlib.sha256(local).hexdigest() == f["sha256"] == hashlib.sha256((root / "artifacts" / dump["id"] / f["path"]).read_bytes()).hexdigest()
    from transformers import AutoModel

    assert AutoModel.from_pretrained(tmp_path / "out" / "dump" / "hf_text").config.hidden_size == 384

    # export: the bundle Node downloaded runs on onnxruntime and agrees with the daemon
    from ember.onnx import OnnxPredictor

    files = [f["path"] for f in summary["export"]["files"]]
    assert {"manifest.json", "model.onnx", "tokenizer/tokenizer.json"} <= set(files)
    bundle = OnnxPredictor(tmp_path / "out" / "export")
    assert bundle.manifest["parity"]["max_abs_diff"] <= 1e-4
    rows = pd.DataFrame(summary["predict"]["rows"])
    with Client(address) as c:
        assert [str(v) for v in bundle.predict(rows)] == list(c.predict("sst2-node", rows).labels)  # version 2


@pytest.mark.slow
@pytest.mark.node
@pytest.mark.detection
def test_node_detection_workflow_against_a_daemon(tmp_path, capsys):
    """Detection from Node: COCO folders read and uploaded as JSON Lines (images as data URIs),
    fit, predict, evaluate, a refused new class, continued fit, dump, export, transfer to new
    classes, and a fit interrupted by kill -9 of the daemon that Node resumes."""
    pytest.importorskip("mmdet", reason="the detection extra is not installed: make install-detection")
    from emberd.engine.detection.data import detection_schema

    from ..shapes import CLASSES, shapes_frame, write_coco
    from .test_detection import untrained_map

    two = ("circle", "triangle")
    sets = {"train": shapes_frame(160, seed=0), "more": shapes_frame(60, seed=2), "test": shapes_frame(40, seed=1),
            "transfer-train": shapes_frame(100, seed=4, classes=two), "transfer-test": shapes_frame(30, seed=5, classes=two)}
    for name, frame in sets.items():
        write_coco(frame, tmp_path / "data" / name)
    root, port = tmp_path / "root", free_port()
    address = f"127.0.0.1:{port}"
    procs = [start_daemon_process(root, port)]
    args = ["--address", address, "--data", str(tmp_path / "data"), "--out", str(tmp_path / "out"), "--time-limit", "40",
            "--chunk-bytes", str(1 << 18), "--victim", "victim-node", "--hp", "env.batch_size=8", "--hp", "env.num_threads=1"]
    stderr = open(tmp_path / "node.stderr", "w+")
    run = subprocess.Popen([shutil.which("node"), "detection.js", *args], cwd=NODE_CLIENT, stdout=subprocess.PIPE, stderr=stderr, text=True)
    watchdog = threading.Timer(1500, run.kill)
    watchdog.start()
    lines: list[str] = []
    try:
        for line in run.stdout:
            lines.append(line.rstrip("\n"))
            if line.startswith("checkpoint victim-node job "):  # kill -9 mid-fit; Node follows through the restart
                os.kill(procs[-1].pid, signal.SIGKILL)
                procs[-1].wait()
                procs.append(start_daemon_process(root, port))
        run.wait(60)
        stderr.seek(0)
        out = "\n".join(lines)
        with capsys.disabled():
            print("\n".join(line for line in lines if not line.startswith(("  [", "summary "))))
        assert run.returncode == 0, f"the Node detection workflow failed:\n{stderr.read()}\n{out[-4000:]}"
        summary = json.loads(lines[-1].removeprefix("summary "))

        # uploads: JSON Lines, every image and box read
        for key, name in (("train", "train"), ("test", "test"), ("more", "more"), ("transfer_train", "transfer-train")):
            assert (summary[key]["format"], summary[key]["rows"]) == ("jsonl", len(sets[name])), key
        assert summary["train"]["chunks"] > 1
        assert any(line.startswith("bad request: continued Fit of shapes-node with a new class 'star' -> FAILED_PRECONDITION") for line in lines)

        with Client(address) as c:
            model = c.get_model("shapes-node")
            assert model.problem_type == "object_detection" and tuple(model.classes) == CLASSES
            assert [(v.version, v.parent_version) for v in model.versions] == [(1, 0), (2, 1)]

            # Node's detections are the Python client's, box for box
            test = sets["test"]
            py = c.predict("shapes-node", test.head(summary["predict"]["rows"]), version=1).detections
            node_found = summary["predict"]["detections"]
            assert any(d["boxes"] for d in node_found)
            for theirs, ours in zip(node_found, py):
                assert [b["label"] for b in theirs["boxes"]] == [b.label for b in ours.boxes]
                np.testing.assert_allclose([[b[k] for k in ("x1", "y1", "x2", "y2", "score")] for b in theirs["boxes"]],
                                           [[b.x1, b.y1, b.x2, b.y2, b.score] for b in ours.boxes], atol=1e-4)
            # Node's mAP (rows from JSON Lines) is the Python client's (rows as Parquet), and beats an untrained detector
            node_map = summary["evaluate"]["scores"]["map"]
            assert node_map == pytest.approx(c.evaluate("shapes-node", test, metrics=["map"], version=1)["map"], abs=1e-9)
            before = untrained_map(detection_schema(sets["train"], "label", None), test)
            assert node_map > max(0.08, 3 * before), (node_map, before)

            # the transfer learned the new class set from the dumped detector
            t = c.get_model("shapes2-node")
            assert tuple(t.classes) == two and c.get_job(summary["transfer"]["id"]).kind == job_pb2.JOB_KIND_TRANSFER
            assert summary["transfer"]["evaluate"]["scores"]["map"] > 0.05

            # the victim: interrupted by the kill, resumed by Node to a first version
            assert len(procs) == 2 and summary["victim"]["fit"]["state"] == "JOB_STATE_INTERRUPTED"
            assert summary["victim"]["resume"]["state"] == "JOB_STATE_SUCCEEDED"
            assert c.get_model("victim-node").current_version == 1

        # the dump and the export came down whole: the daemon's files, byte for byte
        for key in ("dump", "export"):
            for f in summary[key]["files"]:
                local = (tmp_path / "out" / key / f["path"]).read_bytes()
                daemon_copy = (root / "artifacts" / summary[key]["id"] / f["path"]).read_bytes()
                assert hashlib.sha256(local).hexdigest() == f["sha256"] == hashlib.sha256(daemon_copy).hexdigest()
        assert json.loads((tmp_path / "out" / "dump" / "mmdet_image" / "classes.json").read_text()) == list(CLASSES)
        manifest = json.loads((tmp_path / "out" / "export" / "manifest.json").read_text())
        assert (tmp_path / "out" / "export" / "model.onnx").exists() and manifest["parity"]["max_rel_diff"] <= 1e-5
    finally:
        watchdog.cancel()
        run.kill()
        stderr.close()
        procs[-1].send_signal(signal.SIGTERM)
        procs[-1].wait(30)
