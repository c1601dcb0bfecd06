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
