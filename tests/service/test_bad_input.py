"""Bad input gets a clear error before any work, and changes nothing on disk."""

import numpy as np
import pandas as pd
import pytest

from emberd.engine import FailedPrecondition, InvalidArgument, NotFound, Predictor

from ..conftest import tree_state
from ..daemon_helpers import tabular as _tabular


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    path = tmp_path_factory.mktemp("m") / "model"
    p = Predictor(label="label", path=path, verbosity=0)
    p.fit(_tabular(), time_limit=30, hyperparameters={"optim.max_epochs": 3, "optim.lr": 1e-3})
    return path


def test_tabular_model_learns(trained):
    p = Predictor.load(trained)
    assert p.evaluate(_tabular(seed=1))["acc"] > 0.75


@pytest.mark.parametrize(
    "case",
    ["missing_label", "empty", "all_nan_label", "new_class", "structural_override", "unknown_key"],
)
def test_continued_fit_refusals_change_nothing(trained, case):
    before = tree_state(trained)
    p = Predictor.load(trained)
    df = _tabular(seed=2)
    expected = {
        "missing_label": (InvalidArgument, "label column 'label' is not in train_data"),
        "empty": (InvalidArgument, "empty"),
        "all_nan_label": (InvalidArgument, "all missing"),
        "new_class": (FailedPrecondition, "not trained on"),
        "structural_override": (FailedPrecondition, "keeps the model's structure"),
        "unknown_key": (InvalidArgument, "unknown hyperparameter"),
    }[case]
    kwargs = {}
    if case == "missing_label":
        df = df.drop(columns="label")
    elif case == "empty":
        df = df.iloc[:0]
    elif case == "all_nan_label":
        df["label"] = np.nan
    elif case == "new_class":
        df.loc[:5, "label"] = "c"
    elif case == "structural_override":
        kwargs["hyperparameters"] = {"model.numerical_mlp.hidden_size": 7}
    elif case == "unknown_key":
        kwargs["hyperparameters"] = {"optim.learning_rate": 1e-3}
    with pytest.raises(expected[0], match=expected[1]):
        p.fit(df, time_limit=10, **kwargs)
    assert tree_state(trained) == before
    assert p.version == 1


def test_missing_checkpoint_name_is_not_found_and_writes_nothing(tmp_path, shared_data):
    df = shared_data.sst2("train").head(50)
    p = Predictor(label="label", path=tmp_path / "m")
    with pytest.raises(NotFound, match="not a HuggingFace model folder"):
        p.fit(df, hyperparameters={"model.hf_text.checkpoint_name": str(tmp_path / "nope")})
    with pytest.raises(NotFound, match="not a timm"):
        Predictor(label="label", path=tmp_path / "m").fit(
            pd.DataFrame({"image": ["a.jpg", "b.jpg"], "label": [0, 1]}),
            hyperparameters={"model.timm_image.checkpoint_name": "no_such_net"},
        )
    assert not (tmp_path / "m").exists()


def test_continued_fit_writes_a_new_version_beside_the_old(trained, tmp_path):
    import shutil

    path = tmp_path / "copy"
    shutil.copytree(trained, path)
    p = Predictor.load(path)
    p.fit(_tabular(seed=3), time_limit=30, hyperparameters={"optim.max_epochs": 2, "optim.lr": 1e-3})
    assert p.version == 2
    assert Predictor.load(path).version == 2
    report = p.forgetting_report
    assert report["parent_version"] == 1 and report["previous_val_rows"] == 24
    assert abs(report["change"] - (report["after"] - report["before"])) < 1e-9
    assert (path / "versions" / "0001" / "model.safetensors").exists()
    # the continued fit validated on its own holdout and version 1's validation rows, starting
    # with version 1's weights (a candidate like any checkpoint: the result validates no worse)
    summary = p.fit_summary
    assert summary["val_rows"] == 24 + 24 and summary["history"][0]["step"] == 0
    assert summary["val_score"] >= summary["history"][0]["score"]
    assert len(pd.read_parquet(path / "versions" / "0002" / "val.parquet")) == 48
