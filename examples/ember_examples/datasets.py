"""Readers for the real datasets Ember is developed and measured on (SST-2, STS-B, the
hymenoptera photos), from ``../shared/data`` or the samples shipped in ``examples/data``.

Used by the demo, the tests and the benchmarks; not part of the engine.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("EMBER_SHARED_DATA", ROOT.parent / "shared" / "data"))
SAMPLES = ROOT / "examples" / "data"
STSB_COLUMNS = ["genre", "file", "year", "id", "score", "sentence1", "sentence2"]


def shared_available() -> bool:
    return (SHARED / "sst2" / "train.tsv").exists()


def sst2(split: str) -> pd.DataFrame:
    """Columns ``label, sentence`` (dev/test's ``content`` renamed to ``sentence``)."""
    df = pd.read_csv(SHARED / "sst2" / f"{split}.tsv", sep="\t")
    return df.rename(columns={"content": "sentence"})


def stsb(split: str) -> pd.DataFrame:
    """Columns ``genre, file, year, id, score, sentence1, sentence2``; quoting off and only
    the first seven fields kept (197 train rows carry extra trailing fields)."""
    rows = []
    with open(SHARED / "stsb" / f"sts-{split}.csv", encoding="utf-8") as f:
        for line in f:
            rows.append(line.rstrip("\n").split("\t")[:7])
    return pd.DataFrame(rows, columns=STSB_COLUMNS).astype({"score": float})


def hymenoptera(split: str) -> pd.DataFrame:
    """Columns ``image`` (absolute path) and ``label`` (ants or bees)."""
    base = SHARED / "hymenoptera" / split
    rows = [
        {"image": str(p), "label": cls}
        for cls in ("ants", "bees")
        for p in sorted((base / cls).iterdir())
        if p.is_file()
    ]
    return pd.DataFrame(rows)


def sample(name: str) -> pd.DataFrame:
    """A shipped sample: ``sst2_train``, ``sst2_dev``, ``stsb_train``, ``stsb_dev``."""
    df = pd.read_csv(SAMPLES / f"{name}.tsv", sep="\t")
    return df.rename(columns={"content": "sentence"})


def tabular(n: int = 240, seed: int = 0, classes=("a", "b")) -> pd.DataFrame:
    """A small synthetic table (two numbers, a colour, a label they decide): what the fast
    tests and the several-daemons bench train on."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    cat = rng.choice(["red", "green", "blue"], size=n)
    y = np.where(x + (cat == "red") > 0.3, classes[0], classes[1])
    return pd.DataFrame({"x": x, "x2": rng.normal(size=n), "color": cat, "label": y})
