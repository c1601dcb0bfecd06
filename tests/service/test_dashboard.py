"""The dashboard in a real browser: Debian's Chromium driven by Playwright (pointed at the
installed executable: browsers cannot be downloaded here) loads the page of a daemon that
trained a model and continued it, and finds the lineage (v2's parent is v1, with data
digests, scores and v1's alias) and the loss and validation curves with points; it saves a screenshot
(README, "Dashboard"). Also: the JSON behind the page, and the token."""

from __future__ import annotations

import json
import os
import shutil
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from ember import Client
from ember.v1 import job_pb2
from emberd.server import create_server
from emberd.settings import Settings

from ..daemon_helpers import tabular

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT = Path(os.environ.get("EMBER_SCREENSHOTS", ROOT / "build" / "screenshots")) / "dashboard.png"
TOKEN = "dash-test-token"
FAST = {"optim.max_epochs": 4, "optim.lr": 1e-3}


def chromium() -> str | None:
    return os.environ.get("EMBER_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    root = tmp_path_factory.mktemp("emberd-dash")
    d = create_server(Settings(port=0, root=str(root / "root"), http_port=0, token=TOKEN))
    with Client(f"127.0.0.1:{d.port}", token=TOKEN) as c:
        first = c.wait(c.fit("lineage", tabular(), label="label", time_limit=60, hyperparameters=FAST), progress=False)
        second = c.wait(c.fit("lineage", tabular(seed=4), time_limit=60, hyperparameters=FAST), progress=False)
        assert first.state == second.state == job_pb2.JOB_STATE_SUCCEEDED, (first.error, second.error)
        c.set_alias("lineage", "prod", 1)
    d.jobs_done = (first, second)
    yield d
    d.stop(1)


def get(port: int, path: str, token: str | None = TOKEN) -> tuple[int, bytes]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_the_data_behind_the_page_needs_the_token_and_shows_lineage_and_curves(daemon):
    assert get(daemon.http_port, "/api/overview", token=None)[0] == 401
    assert get(daemon.http_port, "/api/overview", token="wrong")[0] == 401
    assert get(daemon.http_port, "/metrics", token=None)[0] == 401
    status, page = get(daemon.http_port, "/", token=None)  # the page itself holds no data
    assert status == 200 and b"<title>Ember dashboard</title>" in page

    status, body = get(daemon.http_port, "/api/overview")
    assert status == 200
    o = json.loads(body)
    [m] = o["models"]
    assert m["name"] == "lineage" and m["current_version"] == 2
    v1, v2 = m["versions"]
    assert v1["parent_version"] is None and v2["parent_version"] == 1 and v1["train_digest"] != v2["train_digest"]
    assert v1["aliases"] == ["prod"] and v2["aliases"] == []
    assert v2["val_score"] is not None and v2["forgetting_before"] is not None
    assert [j["state"] for j in o["jobs"]] == ["SUCCEEDED", "SUCCEEDED"]
    assert any(s["name"] == "ember_rpc_requests_total" for s in o["metrics"])
    status, body = get(daemon.http_port, f"/api/jobs/{daemon.jobs_done[1].id}/curve")
    curve = json.loads(body)
    assert status == 200 and curve["validation"] and all(p["score"] is not None for p in curve["validation"])
    assert get(daemon.http_port, "/api/jobs/nope/curve")[0] == 404


@pytest.mark.skipif(chromium() is None, reason="Chromium is not installed (apt-get install -y chromium; .ci/run does)")
def test_dashboard_in_chromium_shows_lineage_and_curves(daemon):
    sync_api = pytest.importorskip("playwright.sync_api")
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(f"http://127.0.0.1:{daemon.http_port}/?token={TOKEN}")
            page.wait_for_selector('[data-model="lineage"] [data-version="2"]', timeout=30_000)
            # v2 sits in the tree under v1: its parent
            nested = page.locator('[data-model="lineage"] li:has([data-version="1"]) ul.tree [data-version="2"]')
            assert nested.count() == 1
            assert "parent v1" in nested.inner_text() and "score" in nested.inner_text() and "data " in nested.inner_text()
            assert "forgetting" in nested.inner_text()
            assert page.inner_text('[data-model="lineage"] [data-version="1"] .alias') == "prod"
            page.wait_for_function("Number(document.getElementById('val-plot').dataset.points) > 0", timeout=30_000)
            assert int(page.get_attribute("#val-plot", "data-points")) > 0
            assert page.locator("#val-plot circle").count() == int(page.get_attribute("#val-plot", "data-points"))
            assert page.locator("#job-rows tr").count() == 2 and "SUCCEEDED" in page.inner_text("#job-rows")
            assert "hits" in page.inner_text("#cache-body") and "ember_rpc_requests_total" in page.inner_text("#metric-rows")
            page.screenshot(path=str(SCREENSHOT), full_page=True)
            assert not errors, errors
        finally:
            browser.close()
    assert SCREENSHOT.stat().st_size > 10_000
