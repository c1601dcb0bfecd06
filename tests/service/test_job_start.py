"""What precedes a new model's first training step: the head's exact fit, whose forward
pass also prices a validation, so no separate probe runs on the holdout before step 1;
and warm workers still train the same weights as cold ones on that path."""

from __future__ import annotations

import json

import numpy as np

from emberd.engine import Predictor, training

from ..daemon_helpers import tabular, warm_and_cold_weights

HP = {"optim.max_epochs": 2, "optim.lr": 1e-3}  # no time limit: the same number of steps everywhere


def numeric_only(seed: int = 0):
    """One modality: the head is a single Linear, fitted exactly before training."""
    return tabular(seed=seed).drop(columns=["color"])


def test_a_new_head_is_fitted_without_a_validation_probe(tmp_path, monkeypatch):
    seen: list[str] = []  # holdout forwards and events, in order
    real = training.raw_outputs

    def spy(*args, **kwargs):
        seen.append("holdout forward")
        return real(*args, **kwargs)

    monkeypatch.setattr(training, "raw_outputs", spy)
    events: list[dict] = []

    def emit(e: dict) -> None:
        events.append(e)
        seen.append(e.get("state") or e["kind"])

    p = Predictor(label="label", path=tmp_path / "m", verbosity=0)
    p.fit(numeric_only(), hyperparameters=HP, time_limit=60, on_event=emit)
    head = next(e for e in events if e.get("state") == "head_initialized")
    assert head["rows"] > 0 and head["forward_s_per_row"] > 0
    first_step = seen.index("progress")
    assert seen.index("head_initialized") < first_step
    assert "holdout forward" not in seen[:first_step]  # the first holdout pass is a real validation
    assert seen.count("holdout forward") >= 1 and p.fit_summary["steps"] > 0


def test_warm_and_cold_workers_fit_the_same_head_and_weights(tmp_path):
    def took_the_head_path(c, job):
        notes = [json.loads(r.event.message) for r in c.watch(job.id) if r.event.message.startswith("{")]
        assert any(n.get("state") == "head_initialized" for n in notes)  # the path this test is for

    weights = warm_and_cold_weights(tmp_path, numeric_only(), HP, took_the_head_path)
    cold, warm = weights["spawn"], weights["forkserver"]
    assert cold.keys() == warm.keys() and len(cold) > 2
    for k in cold:
        assert np.array_equal(cold[k], warm[k]), k
