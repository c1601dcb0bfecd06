"""Object detection's data forms and refusals, before any training: COCO folders, list cells
through Parquet, images as data URIs and boxes as JSON in text tables, bad boxes and labels
refused (fits: tests/e2e/test_detection.py; without the extra: tests/service/test_detection_extra.py)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from emberd.engine import InvalidArgument, Predictor
from emberd.engine.data import load_table
from emberd.engine.detection.data import detection_schema, encode_detection, load_coco
from emberd.engine.model_store import frame_digest

from ..shapes import CLASSES, shapes_frame, write_coco

mmdet = pytest.importorskip("mmdet", reason="the detection extra is not installed: make install-detection")
pytestmark = pytest.mark.detection

HP = {"env.batch_size": 8, "env.num_threads": 1}


def text_forms(frame: pd.DataFrame, folder: Path) -> dict[str, Path]:
    """The frame as a client without Parquet writes it: images as base64 data URIs, boxes
    and labels as JSON (JSON text in TSV)."""
    uri = [f"data:image/png;base64,{base64.b64encode(b).decode()}" for b in frame["image"]]
    rows = [{"image": u, "boxes": b, "label": lab} for u, b, lab in zip(uri, frame["boxes"], frame["label"])]
    (folder / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    pd.DataFrame({"image": uri, "boxes": [json.dumps(r["boxes"]) for r in rows], "label": [json.dumps(r["label"]) for r in rows]}).to_csv(
        folder / "rows.tsv", sep="\t", index=False
    )
    return {"jsonl": folder / "rows.jsonl", "tsv": folder / "rows.tsv"}


def test_coco_annotations_read_as_the_frame_form(tmp_path):
    frame = shapes_frame(6, seed=5)
    coco = load_coco(write_coco(frame, tmp_path))
    pd.testing.assert_frame_equal(load_table(tmp_path / "annotations.json"), coco)
    assert list(coco.columns) == ["image", "boxes", "label"]
    for (_, a), (_, b) in zip(frame.iterrows(), coco.iterrows()):
        assert Path(b["image"]).read_bytes() == a["image"]
        np.testing.assert_allclose(np.asarray(b["boxes"]).reshape(-1, 4), np.asarray(a["boxes"]).reshape(-1, 4))
        assert list(b["label"]) == list(a["label"])
    schema = detection_schema(coco, "label", None)
    assert schema.image == ("image",) and set(schema.classes) <= set(CLASSES)


def test_digest_of_list_cells_survives_parquet(tmp_path):
    frame = shapes_frame(5, seed=6)
    frame.to_parquet(tmp_path / "f.parquet")
    back = pd.read_parquet(tmp_path / "f.parquet")
    assert isinstance(back["boxes"][0], np.ndarray)
    assert frame_digest(back) == frame_digest(frame)
    assert frame_digest(shapes_frame(5, seed=7)) != frame_digest(frame)


def test_text_tables_carry_images_as_data_uris_and_boxes_as_json(tmp_path):
    frame = shapes_frame(6, seed=9)
    schema = detection_schema(frame, "label", None)
    want = encode_detection(frame, schema, image_size=96, with_labels=True, skip_bad_images=False)
    for fmt, path in text_forms(frame, tmp_path).items():
        table = load_table(path)
        assert detection_schema(table, "label", None) == schema, fmt
        got = encode_detection(table, schema, image_size=96, with_labels=True, skip_bad_images=False)
        assert torch.equal(got.images, want.images) and got.sizes == want.sizes, fmt
        assert all(torch.equal(a, b) for a, b in zip(got.boxes + got.labels, want.boxes + want.labels)), fmt
    broken = load_table(tmp_path / "rows.jsonl")
    broken.at[1, "image"] = "data:image/png;base64,not base64!"
    broken.at[2, "image"] = "data:image/png,raw"
    with pytest.raises(InvalidArgument, match=r"cannot read 2 image\(s\).*<data:image/png;base64 of \d+ chars>.*give a base64 data URI"):
        encode_detection(broken, schema, image_size=96, with_labels=True, skip_bad_images=False)
    bad_label = load_table(tmp_path / "rows.tsv")
    bad_label.at[0, "label"] = "circle"
    with pytest.raises(InvalidArgument, match="as JSON text"):
        Predictor(label="label", path=tmp_path / "m").fit(bad_label, hyperparameters=HP)


def test_bad_detection_input_is_refused_before_any_work(tmp_path):
    frame = shapes_frame(8, seed=8)
    bad = frame.copy()
    bad.at[3, "label"] = list(bad.at[3, "label"]) + ["circle"]
    p = Predictor(label="label", path=tmp_path / "m")
    with pytest.raises(InvalidArgument, match="row 3: .* boxes but .* labels"):
        p.fit(bad, hyperparameters=HP)
    flipped = frame.copy()
    flipped.at[2, "boxes"] = [[50.0, 50.0, 10.0, 60.0]]
    flipped.at[2, "label"] = ["square"]
    with pytest.raises(InvalidArgument, match="x2 > x1"):
        p.fit(flipped, hyperparameters=HP)
    with pytest.raises(InvalidArgument, match="presets"):
        p.fit(frame, hyperparameters={"model.mmdet_image.checkpoint_name": "no_such_detector"})
    with pytest.raises(InvalidArgument, match="unknown detection metric"):
        Predictor(label="label", eval_metric="acc", path=tmp_path / "m").fit(frame)
    assert not (tmp_path / "m").exists()
