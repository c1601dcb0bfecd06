"""What every tier shares. The tiers (README, "Tests while editing"): tests/unit (no daemon, no training;
`make test-fast`), tests/service (a real daemon, small tabular jobs), tests/e2e (real models,
whole workflows, marked slow). Markers: slow, detection (needs mmdet), node (needs the Node
client's packages), gpu (needs CUDA); detection and gpu tests skip, saying why, without them."""

import importlib.util
import logging
import os

import pytest

from ember_examples import datasets

SLOW_TIMEOUT_S = 1800  # a slow test's limit (pyproject's `timeout` is every other test's)


def pytest_configure(config):
    logging.getLogger("emberd").setLevel(logging.INFO)


def pytest_collection_modifyitems(config, items):
    """Skip gpu tests without CUDA and detection tests without mmdet; give slow tests the
    generous timeout unless they name their own."""
    cuda = None
    mmdet = importlib.util.find_spec("mmdet") is not None
    for item in items:
        if item.get_closest_marker("gpu"):
            if cuda is None:
                import torch

                cuda = torch.cuda.is_available()
            if not cuda:
                item.add_marker(pytest.mark.skip(reason="no CUDA device"))
        if item.get_closest_marker("detection") and not mmdet:
            item.add_marker(pytest.mark.skip(reason="the detection extra is not installed: make install-detection"))
        if item.get_closest_marker("slow") and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(SLOW_TIMEOUT_S))


@pytest.fixture(scope="session")
def shared_data():
    if not datasets.shared_available():
        pytest.skip(f"real data not found at {datasets.SHARED} (set EMBER_SHARED_DATA)")
    return datasets


@pytest.fixture(scope="session")
def shared_daemon(tmp_path_factory):
    """One in-process daemon with the default settings for the whole session: for tests whose
    checks hold whatever else the daemon holds (their own model names, no global counts)."""
    from emberd.server import create_server
    from emberd.settings import Settings

    d = create_server(Settings(port=0, root=str(tmp_path_factory.mktemp("shared-emberd") / "root")))
    yield d
    d.stop(1)


def tree_state(path):
    """Every file under ``path`` with its size and mtime: to show that nothing changed."""
    out = {}
    for root, _, files in os.walk(path):
        for f in files:
            p = os.path.join(root, f)
            st = os.stat(p)
            out[os.path.relpath(p, path)] = (st.st_size, st.st_mtime_ns)
    return out


@pytest.fixture(scope="session")
def postgres_server():
    """One real PostgreSQL server for the session (ember_examples/postgres.py)."""
    from ember_examples.postgres import Postgres

    server = Postgres()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def registry_target(request, tmp_path):
    """Where a registry lives, once per store: a SQLite file, then a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return tmp_path / "registry.sqlite"
    return request.getfixturevalue("postgres_server").database()
