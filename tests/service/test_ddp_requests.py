"""Scale-out through the daemon without training on two ranks: bad scale requests fail the
call and create nothing; a daemon indexes predictor folders written into its root without it."""

import grpc
import pytest

from ember import Client, EmberRpcError
from emberd.engine import Predictor
from emberd.server import create_server
from emberd.settings import Settings

from ..daemon_helpers import tabular


@pytest.fixture(scope="module")
def client(shared_daemon):
    with Client(f"127.0.0.1:{shared_daemon.port}") as c:
        yield c


@pytest.mark.parametrize(
    "options,code,match",
    [
        ({"num_nodes": 2}, grpc.StatusCode.FAILED_PRECONDITION, "torchrun or SLURM"),
        ({"devices": 2, "hyperparameters": {"env.devices": 3}}, grpc.StatusCode.INVALID_ARGUMENT, "disagree"),
        ({"strategy": "fsdp"}, grpc.StatusCode.INVALID_ARGUMENT, "env.strategy"),
        ({"devices": -1}, grpc.StatusCode.INVALID_ARGUMENT, "env.devices"),
    ],
)
def test_bad_scale_requests_fail_the_call_and_create_nothing(client, options, code, match):
    with pytest.raises(EmberRpcError, match=match) as e:
        client.fit("refused", tabular(), label="label", **options)
    assert e.value.code == code
    assert "refused" not in {m.name for m in client.list_models()}


def test_a_daemon_indexes_the_models_written_into_its_root_without_it(tmp_path):
    """What a multi-node fit leaves: a finished predictor folder the registry never saw."""
    Predictor(label="label", path=tmp_path / "root" / "models" / "outside").fit(tabular(), hyperparameters={"optim.max_epochs": 1})
    d = create_server(Settings(port=0, root=str(tmp_path / "root")))
    try:
        with Client(f"127.0.0.1:{d.port}") as c:
            assert c.get_model("outside").current_version == 1
            assert c.evaluate("outside", tabular(seed=3))["acc"] > 0.6
    finally:
        d.stop(1)



def test_a_running_daemon_serves_a_model_published_into_its_root_at_once(tmp_path):
    """A torchrun/SLURM fit that publishes while the daemon runs: the next call naming the
    model finds it (no restart), and listing shows it with its versions."""
    root = tmp_path / "root"
    d = create_server(Settings(port=0, root=str(root)))
    try:
        with Client(f"127.0.0.1:{d.port}") as c:
            assert "late" not in {m.name for m in c.list_models()}
            Predictor(label="label", path=root / "models" / "late").fit(tabular(), hyperparameters={"optim.max_epochs": 1})
            Predictor(label="label", path=root / "models" / "listed").fit(tabular(), hyperparameters={"optim.max_epochs": 1})
            answer = c.predict("late", tabular(seed=4).drop(columns=["label"]).head(5))
            assert len(answer.labels) == 5 and answer.version == 1
            assert {"late", "listed"} <= {m.name for m in c.list_models()}
            assert [v.version for v in c.get_model("listed").versions] == [1]
    finally:
        d.stop(1)
