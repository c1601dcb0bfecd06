"""The read-only web dashboard (``--http-port``): one static page (``index.html``, plain
JavaScript drawing its own SVG plots, nothing to build) and the JSON it polls, read from the
registry, the job event logs, the warm cache and the metrics; ``/metrics`` as well.

With a token set, every path but ``/`` (the page itself holds no data) needs
``Authorization: Bearer <token>``, the same token as the gRPC API; the page takes it from
its address (``/?token=...``) and sends it on each request."""

from __future__ import annotations

import hmac
import json
import logging
import math
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from ..app import Ember
    from ..metrics import Metrics

from ..metrics import CONTENT_TYPE

log = logging.getLogger("emberd.dashboard")
PAGE = Path(__file__).with_name("index.html")
MAX_JOBS = 200


def _num(v: Any) -> float | None:
    return None if v is None or (isinstance(v, float) and not math.isfinite(v)) else v


class Dashboard:
    def __init__(self, app: "Ember", metrics: "Metrics", *, token: str | None = None) -> None:
        self.app, self.metrics, self.token = app, metrics, token
        self._server: ThreadingHTTPServer | None = None

    # ---- what the page shows ------------------------------------------------------------------
    def _aliases(self, name: str) -> dict[int, list[str]]:
        """version -> its aliases, where the registry keeps aliases (else none)."""
        get = getattr(self.app.registry, "aliases", None)
        out: dict[int, list[str]] = {}
        if get is None:
            return out
        try:
            found = get(name)
        except Exception:  # noqa: BLE001 - aliases are optional here
            return out
        items = found.items() if isinstance(found, dict) else [(r["alias"], r["version"]) if not isinstance(r, tuple) else r for r in found]
        for alias, version in items:
            out.setdefault(int(version), []).append(str(alias))
        return out

    def models(self) -> list[dict[str, Any]]:
        out = []
        for m in self.app.registry.models():
            name = m.name
            aliases = self._aliases(name)
            versions = [
                {
                    "version": v.version,
                    "parent_version": v.parent_version,
                    "val_score": _num(v.val_score),
                    "train_digest": v.train_digest,
                    "forgetting_before": _num(v.forgetting_before),
                    "forgetting_after": _num(v.forgetting_after),
                    "job_id": v.job_id,
                    "created_at": v.created_at,
                    "aliases": aliases.get(v.version, []),
                }
                for v in self.app.registry.versions(name)
            ]
            out.append({"name": name, "label": m.label, "problem_type": m.problem_type, "eval_metric": m.eval_metric,
                        "current_version": self.app.catalog.current_version(name), "versions": versions})
        return out

    def jobs(self) -> list[dict[str, Any]]:
        return [
            {"id": j.id, "model": j.model_name, "kind": j.kind, "state": j.state, "created_at": j.created_at,
             "updated_at": j.updated_at, "version": j.version, "error": j.error}
            for j in self.app.registry.jobs(limit=MAX_JOBS)
        ]

    def curve(self, job_id: str) -> dict[str, Any] | None:
        job = self.app.registry.job(job_id)
        if job is None:
            return None
        loss, val = [], []
        for _, t, e in self.app.registry.events(job_id):
            if e.get("kind") == "progress" and _num(e.get("loss")) is not None:
                loss.append({"t": t, "step": e.get("step"), "epoch": e.get("epoch"), "loss": e["loss"], "samples_per_s": e.get("samples_per_s")})
            elif e.get("kind") == "validation" and _num(e.get("score")) is not None:
                val.append({"t": t, "step": e.get("step"), "epoch": e.get("epoch"), "score": e["score"]})
        return {"id": job.id, "model": job.model_name, "state": job.state, "loss": loss, "validation": val}

    def metric_samples(self) -> list[dict[str, Any]]:
        """The metrics' samples (histogram buckets left out) for the page's table."""
        out = []
        for fam in self.metrics.registry.collect():
            for s in fam.samples:
                if s.name.endswith(("_bucket", "_created")):
                    continue
                out.append({"name": s.name, "labels": s.labels, "value": _num(s.value)})
        return out

    def overview(self) -> dict[str, Any]:
        return {"models": self.models(), "jobs": self.jobs(), "cache": self.app.cache.stats(), "metrics": self.metric_samples()}

    # ---- serving ----------------------------------------------------------------------------
    def serve(self, host: str, port: int) -> int:
        dash = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "emberd-dashboard"

            def log_message(self, fmt: str, *args: Any) -> None:  # the access log is the gRPC one's business
                log.debug("%s " + fmt, self.address_string(), *args)

            def _send(self, code: int, body: bytes, ctype: str) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.send_header("X-Content-Type-Options", "nosniff")
                self.end_headers()
                self.wfile.write(body)

            def _json(self, obj: Any, code: int = 200) -> None:
                self._send(code, json.dumps(obj, allow_nan=False, default=str).encode(), "application/json")

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                path = urlsplit(self.path).path
                if path in ("/", "/index.html"):
                    self._send(200, PAGE.read_bytes(), "text/html; charset=utf-8")
                    return
                if dash.token and not hmac.compare_digest(self.headers.get("Authorization", "").encode(), f"Bearer {dash.token}".encode()):
                    self._json({"error": "missing or wrong bearer token: open the page as /?token=<token>"}, 401)
                    return
                try:
                    if path == "/metrics":
                        self._send(200, dash.metrics.text(), CONTENT_TYPE)
                    elif path == "/api/overview":
                        self._json(dash.overview())
                    elif path.startswith("/api/jobs/") and path.endswith("/curve"):
                        c = dash.curve(path[len("/api/jobs/") : -len("/curve")])
                        self._json(c if c is not None else {"error": "no such job"}, 200 if c is not None else 404)
                    else:
                        self._json({"error": "not found"}, 404)
                except Exception as e:  # noqa: BLE001 - a page request must not take the daemon down
                    log.exception("dashboard %s", path)
                    self._json({"error": f"{type(e).__name__}: {e}"}, 500)

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="ember-dashboard", daemon=True).start()
        return int(self._server.server_address[1])

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
