"""Object detection with mmdet: the engine's fit, reload, dump for plain mmdet and ONNX
(slow), and the whole workflow through the daemon (slow):
fit, predict, evaluate, continued fit, kill -9 and resume, dump, transfer to new classes.
Data forms and refusals: tests/unit/test_detection_data.py.

The data is the synthetic shapes set of ``tests/shapes.py`` (exact boxes, fixed seeds).
Training uses one torch thread: on a shared 2-core machine two threads ran 10x slower.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from emberd.engine import FailedPrecondition, Predictor
from emberd.engine.config import Config
from emberd.engine.detection.data import detection_schema
from emberd.engine.detection.evaluation import coco_map
from emberd.engine.detection.model import DetectionModel

from ..shapes import CLASSES, shapes_frame, write_coco

mmdet = pytest.importorskip("mmdet", reason="the detection extra is not installed: make install-detection")
pytestmark = pytest.mark.detection

HP = {"env.batch_size": 8, "env.num_threads": 1}


def untrained_map(schema, test: pd.DataFrame, seed: int = 0, hp: dict | None = None) -> float:
    """COCO mAP of the same detector with its starting weights (what a fit must beat)."""
    torch.manual_seed(seed)
    model = DetectionModel.create(schema, Config.from_overrides({**HP, **(hp or {})}))
    ds = model.encode(test, with_labels=True, skip_bad_images=False)
    return coco_map(model.detect(ds), model.targets(ds), len(schema.classes))["map"]


# ---- slow: the engine ----------------------------------------------------------------------
@pytest.mark.slow
def test_engine_fit_beats_untrained_reloads_dumps_for_plain_mmdet_and_exports_onnx(tmp_path):
    train, test = shapes_frame(160, seed=0), shapes_frame(40, seed=1)
    p = Predictor(label="label", path=tmp_path / "m").fit(train, time_limit=60, hyperparameters=HP)
    assert p.problem_type == "object_detection" and p.class_labels == list(CLASSES)
    before = untrained_map(p._model.schema, test)
    scores = p.evaluate(test, metrics=["map", "map_50"])
    print(f"engine: mAP {scores['map']:.3f} (mAP@50 {scores['map_50']:.3f}) after {p.fit_summary['steps']} steps; untrained {before:.3f}")
    assert scores["map"] > max(0.08, 3 * before)

    found = p.predict(test.head(3), as_pandas=False)
    assert len(found) == 3 and all(isinstance(d["bbox"][0], float) and d["class"] in CLASSES for row in found for d in row)
    again = Predictor.load(tmp_path / "m")
    assert again.predict(test.head(3), as_pandas=False) == found
    star = train.head(4).copy()
    star.at[0, "label"] = ["star"] * len(star.at[0, "label"])
    with pytest.raises(FailedPrecondition, match="star"):
        again.fit(star)
    with pytest.raises(FailedPrecondition, match="image_size"):
        again.fit(train, hyperparameters={"model.mmdet_image.image_size": 96})
    assert again.version == 1

    # The dump loads with plain mmdet (the documented calls) and gives the same raw outputs.
    dump = Path(p.dump_model(tmp_path / "dump")) / "mmdet_image"
    assert sorted(os.listdir(dump)) == ["README.md", "classes.json", "config.json", "model.safetensors"]
    from mmdet.apis import inference_detector, init_detector
    from safetensors.torch import load_file

    plain = init_detector(str(dump / "config.json"), device="cpu")
    plain.load_state_dict(load_file(dump / "model.safetensors"))
    plain.dataset_meta["classes"] = tuple(json.loads((dump / "classes.json").read_text()))
    model = p._model
    ds = model.encode(test.head(4), with_labels=False, skip_bad_images=False)
    inputs, ours = model.raw_outputs(ds, range(4))
    with torch.no_grad():
        theirs = [t for level in plain._forward(inputs) for t in level]
    diff = max((a - b).abs().max().item() for a, b in zip(ours, theirs))
    print(f"dump: max abs diff of raw head outputs, Ember vs plain mmdet: {diff:.2e}")
    assert diff <= 1e-5
    coco = write_coco(test.head(2), tmp_path / "coco")
    res = inference_detector(plain, str(coco.parent / "images" / "0000.png"))
    top = int(res.pred_instances.scores.argmax())
    assert plain.dataset_meta["classes"][int(res.pred_instances.labels[top])] == found[0][0]["class"]
    np.testing.assert_allclose(res.pred_instances.bboxes[top].numpy(), found[0][0]["bbox"], atol=1e-3)

    # ONNX up to the raw head outputs, checked with onnxruntime on real rows.
    from emberd.engine.detection.export import export_onnx

    manifest = export_onnx(model, tmp_path / "onnx", test.head(4))
    parity = manifest["parity"]
    print(f"onnx: onnxruntime vs torch on {parity['rows']} rows: max abs diff {parity['max_abs_diff']}, max rel diff {parity['max_rel_diff']:.2e}")
    assert parity["max_rel_diff"] <= 1e-5 and parity["max_abs_diff"]["cls_score"] <= 1e-5
    assert manifest["classes"] == list(CLASSES) and manifest["outputs"][0].startswith("cls_score")
    # Decoding and NMS outside the graph, as the manifest says: the head's predict_by_feat on
    # onnxruntime's outputs gives Ember's detections.
    import onnxruntime as ort

    data = model.net.data_preprocessor(model.batch(ds, range(4)), False)
    outs = ort.InferenceSession(str(tmp_path / "onnx" / "model.onnx")).run(manifest["outputs"], {"image": data["inputs"].numpy()})
    levels = len(manifest["strides"])
    groups = [[torch.from_numpy(o) for o in outs[k : k + levels]] for k in range(0, len(outs), levels)]
    decoded = model.net.bbox_head.predict_by_feat(*groups, batch_img_metas=[d.metainfo for d in data["data_samples"]], rescale=True)
    for got, want in zip(decoded, p.predict(test.head(4), as_pandas=False)):
        assert len(got.bboxes) == len(want)
        # the strongest detections agree box for box; further down, near-equal scores may swap places
        top = min(10, len(want))
        np.testing.assert_allclose(got.bboxes.numpy()[:top], np.array([d["bbox"] for d in want]).reshape(-1, 4)[:top], atol=1e-2)


# ---- slow: through the daemon ----------------------------------------------------------------
@pytest.mark.slow
def test_daemon_detection_workflow(tmp_path, capsys):
    from ember import Client, MultiModalPredictor
    from ember.v1 import job_pb2

    from ..daemon_helpers import free_port, start_daemon_process

    root, port = tmp_path / "root", free_port()
    proc = start_daemon_process(root, port)
    try:
        c = Client(f"127.0.0.1:{port}")
        train, test = shapes_frame(160, seed=0), shapes_frame(40, seed=1)

        # Fit, Predict, Evaluate through the Python client.
        p = MultiModalPredictor(label="label", path=tmp_path / "shapes", client=c, verbosity=0)
        p.fit(train, time_limit=40, hyperparameters=HP)
        assert p.problem_type == "object_detection"
        test.head(2).to_parquet(tmp_path / "rows.parquet")  # the CLI: one JSON line of boxes per row
        from ember.cli import main as cli

        assert cli(["--address", f"127.0.0.1:{port}", "predict", p.model_name, str(tmp_path / "rows.parquet")]) == 0
        lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("[")]
        assert len(lines) == 2 and all(d["class"] in CLASSES for line in lines for d in json.loads(line))
        scores = p.evaluate(test, metrics=["map", "map_50"])
        before = untrained_map(detection_schema(train, "label", None), test)
        with capsys.disabled():
            print(f"daemon: mAP {scores['map']:.3f} (mAP@50 {scores['map_50']:.3f}); untrained {before:.3f}")
        assert scores["map"] > max(0.08, 3 * before)
        found = p.predict(test.head(4), as_pandas=False)
        assert len(found) == 4 and any(found)
        assert all(d["class"] in CLASSES and d["bbox"][2] > d["bbox"][0] for row in found for d in row)
        assert c.predict(p.model_name, test.head(2)).detections[0].boxes[0].label in CLASSES

        # Continued fit: same classes, a new version; a new class is refused on the RPC.
        p2 = MultiModalPredictor.load(tmp_path / "shapes", client=c)
        p2.verbosity = 0
        p2.fit(shapes_frame(60, seed=2), time_limit=20, hyperparameters=HP)
        assert c.get_model(p.model_name).current_version == 2
        star = shapes_frame(4, seed=3)
        star.at[0, "label"] = ["star"] * len(star.at[0, "label"])
        with pytest.raises(Exception, match="star"):
            c.fit(p.model_name, star, label="label", hyperparameters=HP)

        # Dump, Export (ONNX up to the raw head outputs), then Transfer to a new class set.
        dump = Path(p.dump_model(tmp_path / "dump"))
        assert (dump / "mmdet_image" / "model.safetensors").exists()
        c.download(c.export(p.model_name).id, tmp_path / "onnx")
        manifest = json.loads((tmp_path / "onnx" / "manifest.json").read_text())
        assert (tmp_path / "onnx" / "model.onnx").exists() and manifest["parity"]["max_rel_diff"] <= 1e-5
        two = ("circle", "triangle")
        t = MultiModalPredictor(label="label", path=tmp_path / "two", client=c, verbosity=0)
        t.fit(shapes_frame(100, seed=4, classes=two), time_limit=25,
              hyperparameters={**HP, "model.mmdet_image.checkpoint_name": str(dump / "mmdet_image")})
        assert t.class_labels == list(two) and t.last_job.kind == job_pb2.JOB_KIND_TRANSFER
        two_test = shapes_frame(30, seed=5, classes=two)
        t_map = t.evaluate(two_test)["map"]
        t_before = untrained_map(detection_schema(two_test, "label", None), two_test)
        with capsys.disabled():
            print(f"transfer: mAP {t_map:.3f} on the new classes; untrained {t_before:.3f}")
        assert t_map > max(0.05, 2 * t_before)

        # kill -9 of the daemon after a fit's first checkpoint, restart, Resume.
        job = c.fit("victim", train, label="label", time_limit=30, hyperparameters={**HP, "optim.checkpoint_interval_s": 2})
        for r in c.watch(job.id):
            if r.event.kind == job_pb2.JOB_EVENT_KIND_CHECKPOINT:
                break
        c.close()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc = start_daemon_process(root, port)
        with Client(f"127.0.0.1:{port}") as c:
            assert c.get_job(job.id).state == job_pb2.JOB_STATE_INTERRUPTED
            resumed = c.wait(c.resume("victim"), progress=False)
            assert resumed.state == job_pb2.JOB_STATE_SUCCEEDED, resumed.error
            assert c.get_model("victim").current_version == 1
            assert c.evaluate("victim", test)["map"] > max(0.05, 2 * before)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
