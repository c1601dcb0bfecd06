"""What the operator sees, without a daemon: the field, reason and resource a refusal's
message becomes (google.rpc details), third-party log noise filtered, JSON log lines, and
the example systemd unit file (tests/service/test_operator.py calls a daemon)."""

import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from emberd.logs import JsonFormatter, NoiseFilter

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("error", "field"),
    [
        ("hyperparameter 'optim.lr' must be a finite number in (0, 10], got -1", "options.hyperparameters[optim.lr]"),
        ("unknown hyperparameter 'optim.lrr'. Did you mean 'optim.lr'?", "options.hyperparameters[optim.lrr]"),
        ("env.strategy must be one of ('auto', 'ddp'), got 'x'", "options.hyperparameters[env.strategy]"),
        ("train_data: path '/x' must be absolute (a file under the daemon's --data-roots)", "train_data"),
        ("upload header: sha256 must be 64 lower-case hex digits", "upload_header"),
        ("label column 'y' is not in train_data; its columns are ['x']", "options.label"),
        ("seed must be an integer in [0, 4294967295], got -1", "options.seed"),
        ("the uploaded bytes are not a readable csv table: boom", None),
    ],
)
def test_the_field_a_message_names_becomes_the_violation(error, field):
    from emberd.engine.errors import InvalidArgument, NotFound
    from emberd.rich_errors import field_of, reason_of, resource_of

    assert field_of(InvalidArgument(error)) == field
    assert field_of(InvalidArgument(error, field="options.explicit")) == "options.explicit"  # the raiser's word wins
    assert reason_of(InvalidArgument(error)) == "INVALID_ARGUMENT" and reason_of(InvalidArgument(error, reason="TOO_DEEP")) == "TOO_DEEP"
    assert resource_of(NotFound("train_data: no such file '/data/t.csv'")) == ("file", "/data/t.csv")
    assert resource_of(NotFound("model 'm' has no version 3; versions: [1, 2]")) == ("ember.v1.ModelVersion", "m@3")
    assert resource_of(NotFound("model 'm' has no alias 'prod'")) == ("ember.v1.ModelAlias", "m@prod")


def test_third_party_noise_is_filtered():
    f = NoiseFilter()
    rec = lambda name, level, msg: logging.LogRecord(name, level, __file__, 1, msg, None, None)  # noqa: E731
    assert not f.filter(rec("lightning.pytorch.utilities.rank_zero", logging.INFO, "💡 Tip: For seamless cloud logging, try installing litlogger"))
    assert not f.filter(rec("lightning.pytorch.utilities.rank_zero", logging.INFO, "GPU available: False, used: False"))
    assert not f.filter(rec("transformers.modeling_utils", logging.INFO, "Loading weights: 100%"))
    assert f.filter(rec("lightning.pytorch", logging.ERROR, "a real failure"))
    assert f.filter(rec("emberd.jobs", logging.INFO, "job started"))
    line = json.loads(JsonFormatter().format(rec("emberd.jobs", logging.WARNING, "disk nearly full")))
    assert line["level"] == "WARNING" and line["message"] == "disk nearly full" and line["time"].endswith("+00:00")


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_the_example_unit_file_verifies(tmp_path):
    unit = (ROOT / "deploy" / "emberd.service").read_text()
    assert "Type=notify" in unit and "ExecStart=" in unit
    exe = shutil.which("emberd") or str(Path(sys.executable).with_name("emberd"))
    if not Path(exe).exists():
        pytest.skip("no emberd executable to point the unit at")
    local = tmp_path / "emberd.service"  # the unit as installed: ExecStart names this machine's emberd
    local.write_text(unit.replace("/usr/local/bin/emberd", exe))
    r = subprocess.run(["systemd-analyze", "verify", str(local)], capture_output=True, text=True, timeout=60)
    problems = [line for line in (r.stdout + r.stderr).splitlines() if "emberd.service" in line]
    assert r.returncode == 0 and not problems, r.stdout + r.stderr

