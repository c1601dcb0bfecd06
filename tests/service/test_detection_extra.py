"""Without the detection extra, a detection fit is refused naming the install command (a fresh
interpreter in which mmdet cannot be imported: about 10 s of imports, so not a unit test)."""

import subprocess
import sys
import textwrap
from pathlib import Path


def test_without_the_extra_a_detection_fit_names_the_install_command():
    code = textwrap.dedent(
        """
        import sys
        sys.modules["mmdet"] = None  # as if the detection extra were not installed
        from emberd.engine import FailedPrecondition
        from emberd.engine.plan import plan_fit
        from tests.shapes import shapes_frame
        try:
            plan_fit(label="label", train_df=shapes_frame(4, 0), tuning_df=None, hyperparameters={})
        except FailedPrecondition as e:
            print("REFUSED:", e)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).resolve().parents[2], timeout=120)
    assert "REFUSED:" in out.stdout and "make install-detection" in out.stdout, out.stderr[-2000:]

