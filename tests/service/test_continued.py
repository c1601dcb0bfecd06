"""Continued fits (Fit on a model that has a version, with new rows) on a small tabular
model: the parent is scored on the holdout once, the child never validates worse than it,
and a child that cannot beat it keeps its weights and says so."""

from __future__ import annotations

import pytest
import torch

from emberd.engine import Predictor, training
from emberd.engine.config import Config
from emberd.engine.data import infer_schema
from emberd.engine.distributed import params_digest
from emberd.engine.models import build_net

from ..daemon_helpers import tabular

FAST = {"optim.max_epochs": 3, "optim.lr": 1e-3}


@pytest.fixture()
def parent(tmp_path):
    path = tmp_path / "m"
    Predictor(label="label", path=path, verbosity=0).fit(tabular(seed=0), hyperparameters=FAST)
    return path


@pytest.fixture()
def forwards(monkeypatch):
    """The digest of the weights each holdout forward pass ran with (probes included)."""
    seen: list[str] = []
    real = training.raw_outputs

    def spy(net, *args, **kwargs):
        seen.append(params_digest(net))
        return real(net, *args, **kwargs)

    monkeypatch.setattr(training, "raw_outputs", spy)
    return seen


def _continue(path, hyperparameters):
    events: list[dict] = []
    p = Predictor.load(path)
    parent_digest = params_digest(p._model.net)
    p.fit(tabular(seed=1), hyperparameters=hyperparameters, on_event=events.append)
    return p, parent_digest, events


def test_parent_is_scored_once_and_the_child_validates_no_worse(parent, forwards):
    p, parent_digest, events = _continue(parent, FAST)
    assert forwards.count(parent_digest) == 1  # no probe, no second validation of the same weights
    scored = [e for e in events if e.get("state") == "parent_validated"]
    assert len(scored) == 1
    at_start = [e for e in events if e["kind"] == "validation" and e["step"] == 0]
    assert [e["score"] for e in at_start] == [scored[0]["score"]]  # the parent's candidate, recorded not re-run
    s = p.fit_summary
    assert s["steps"] > 0 and s["val_score"] >= scored[0]["score"]
    # the published weights are the parent's exactly when the run says it kept them
    assert (params_digest(p._model.net) == parent_digest) == s["kept_parent"]


def test_a_child_that_cannot_beat_its_parent_keeps_its_weights_and_says_so(parent):
    # lr 0: the steps change no weight, so no checkpoint beats the parent
    p, parent_digest, events = _continue(parent, {**FAST, "optim.lr": 0.0, "optim.top_k_average_method": "best"})
    assert p.fit_summary["kept_parent"] is True
    assert p.version == 2 and params_digest(p._model.net) == parent_digest
    kept = [e for e in events if e.get("state") == "kept_parent"]
    assert len(kept) == 1 and kept[0]["parent_version"] == 1 and "did not beat version 1" in kept[0]["message"]


def test_a_first_fit_reports_no_kept_parent(parent):
    summary = Predictor(label="label", path=parent.parent / "other", verbosity=0).fit(tabular(seed=2), hyperparameters=FAST).fit_summary
    assert "kept_parent" not in summary


def test_continued_fits_take_smaller_steps():
    df = tabular()
    cfg = Config.from_overrides({"optim.continued_lr_scale": 0.25})
    net = build_net(infer_schema(df, "label"), cfg, pretrained=False)
    first = training.LitModel(net, "binary", cfg).configure_optimizers()
    continued = training.LitModel(net, "binary", cfg, lr_scale=cfg.optim.continued_lr_scale).configure_optimizers()
    a = [g["base_lr"] for g in first.param_groups]
    b = [g["base_lr"] for g in continued.param_groups]
    assert len(a) == len(b) > 0 and all(torch.isclose(torch.tensor(y), torch.tensor(0.25 * x)) for x, y in zip(a, b))
