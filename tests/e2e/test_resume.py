"""kill -9 of a training process after its first checkpoint, then resume (slow)."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from emberd.engine import FailedPrecondition, Predictor
from emberd.engine.checkpoint_io import load_checkpoint

pytestmark = pytest.mark.slow

TIME_LIMIT = 40
FIT = textwrap.dedent(
    """
    import sys
    from ember_examples import datasets
    from emberd.engine import Predictor
    df = datasets.sst2("train").sample(n=600, random_state=0)
    Predictor(label="label", path=sys.argv[1], verbosity=0).fit(
        df, time_limit={limit}, hyperparameters={{"optim.checkpoint_interval_s": 2, "optim.patience": 1000}})
    """
)


def test_sigkill_after_first_checkpoint_then_resume(shared_data, tmp_path):
    path = tmp_path / "model"
    # The child is a fresh interpreter: pytest's pythonpath does not reach it, so it gets examples/ itself.
    examples = str(Path(__file__).resolve().parents[2] / "examples")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [examples, os.environ.get("PYTHONPATH")]))}
    proc = subprocess.Popen([sys.executable, "-c", FIT.format(limit=TIME_LIMIT), str(path)], env=env)
    ckpt = path / "run" / "last.ckpt"
    deadline = time.monotonic() + 120
    while not ckpt.exists():
        assert proc.poll() is None, "the fit ended before writing a checkpoint"
        assert time.monotonic() < deadline
        time.sleep(0.2)
    time.sleep(1.0)  # kill it mid-training, maybe mid-way through the next write
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()

    # Whatever the moment of the kill, the checkpoint on disk is whole and loads.
    state = load_checkpoint(ckpt)
    step_at_ckpt = state["global_step"]
    spent = state["callbacks"]["TimeBudget"]["elapsed_s"]
    assert step_at_ckpt > 0 and 0 < spent < TIME_LIMIT
    with pytest.raises(FailedPrecondition, match="resume=True"):
        Predictor.load(path)

    df = shared_data.sst2("train").sample(n=600, random_state=0)
    t0 = time.monotonic()
    p = Predictor.load(path, resume=True).fit(df, time_limit=TIME_LIMIT)
    resumed_s = time.monotonic() - t0
    summary = p.fit_summary
    print(f"checkpoint at step {step_at_ckpt} after {spent:.1f}s; resumed run took {resumed_s:.1f}s, "
          f"ended at step {summary['steps']}, budget used {summary['train_seconds']:.1f}s")
    # The resumed run got the rest of the budget (not zero, not a fresh full one) and trained on.
    assert summary["steps"] > step_at_ckpt
    assert resumed_s >= 0.5 * (TIME_LIMIT - spent)
    assert summary["train_seconds"] <= TIME_LIMIT + 5
    again = Predictor.load(path)
    assert again.version == 1
    assert again.evaluate(shared_data.sst2("dev"))["acc"] > 0.6
    with pytest.raises(FailedPrecondition, match="nothing to resume"):
        Predictor.load(path, resume=True)
