import logging
import os

import pytest

from ember_examples import datasets


def pytest_configure(config):
    logging.getLogger("emberd").setLevel(logging.INFO)


@pytest.fixture(scope="session")
def shared_data():
    if not datasets.shared_available():
        pytest.skip(f"real data not found at {datasets.SHARED} (set EMBER_SHARED_DATA)")
    return datasets


def tree_state(path):
    """Every file under ``path`` with its size and mtime: to show that nothing changed."""
    out = {}
    for root, _, files in os.walk(path):
        for f in files:
            p = os.path.join(root, f)
            st = os.stat(p)
            out[os.path.relpath(p, path)] = (st.st_size, st.st_mtime_ns)
    return out
