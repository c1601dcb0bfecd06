import pandas as pd
import pytest

from emberd.engine.data import infer_problem_type, infer_schema, load_table
from emberd.engine.errors import FailedPrecondition, InvalidArgument


def test_problem_types():
    assert infer_problem_type(pd.Series([0, 1, 1, 0])) == "binary"
    assert infer_problem_type(pd.Series(["a", "b", "c"])) == "multiclass"
    assert infer_problem_type(pd.Series([0.1, 2.5, 3.7, 4.0])) == "regression"
    with pytest.raises(InvalidArgument, match="at least two"):
        infer_problem_type(pd.Series([1, 1, 1], name="y"))


def test_column_roles_on_real_tables(shared_data):
    sts = shared_data.stsb("train").head(300)[["genre", "score", "sentence1", "sentence2"]]
    s = infer_schema(sts, "score")
    assert s.problem_type == "regression"
    assert s.text == ("sentence1", "sentence2") and s.categorical == ("genre",)
    imgs = shared_data.hymenoptera("train")
    s = infer_schema(imgs, "label")
    assert s.image == ("image",) and s.problem_type == "binary" and s.classes == ("ants", "bees")


def test_labels_round_trip_and_new_classes_are_refused():
    df = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0], "y": ["b", "a", "c", "a"]})
    s = infer_schema(df, "y")
    idx = s.encode_labels(df["y"])
    assert list(s.decode_labels(idx)) == ["b", "a", "c", "a"]
    with pytest.raises(FailedPrecondition, match="'d'"):
        s.encode_labels(pd.Series(["a", "d"]))


def test_bad_tables(tmp_path):
    with pytest.raises(InvalidArgument, match="empty"):
        load_table(pd.DataFrame({"a": []}))
    with pytest.raises(InvalidArgument, match="all missing"):
        infer_schema(pd.DataFrame({"x": [1, 2], "y": [None, None]}), "y")
    with pytest.raises(InvalidArgument, match="not in the data"):
        infer_schema(pd.DataFrame({"x": [1, 2]}), "y")
    p = tmp_path / "t.tsv"
    pd.DataFrame({"a": [1], "b": ["x"]}).to_csv(p, sep="\t", index=False)
    assert list(load_table(str(p)).columns) == ["a", "b"]
    odd = tmp_path / "t.xlsx"
    odd.write_bytes(b"PK")
    # the refusal names every registered reader, detection's COCO reader among them
    with pytest.raises(InvalidArgument, match=r"cannot read 't.xlsx'; give a \.parquet, \.csv, \.tsv, \.jsonl, COCO annotations \(\.json\) file"):
        load_table(odd)


def test_images_inline_in_text_tables_as_data_uris(shared_data, tmp_path):
    """A client without Parquet sends image bytes as base64 data URIs: they read as the
    same image column and decode to the same pixels as the files."""
    import base64
    import json

    import numpy as np

    from ember.onnx import load_image

    imgs = shared_data.hymenoptera("train").groupby("label").head(3).reset_index(drop=True)
    uris = [f"data:image/jpeg;base64,{base64.b64encode(open(p, 'rb').read()).decode()}" for p in imgs["image"]]
    rows = [{"photo": u, "label": lab} for u, lab in zip(uris, imgs["label"])]
    (tmp_path / "t.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    table = load_table(tmp_path / "t.jsonl")
    assert infer_schema(table, "label").image == ("photo",)
    for uri, path in zip(table["photo"], imgs["image"]):
        assert np.array_equal(load_image(uri, 64), load_image(path, 64))
    with pytest.raises(ValueError, match="base64 data URI"):
        load_image("data:image/jpeg,rawbytes", 64)
