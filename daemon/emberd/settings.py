"""Daemon settings: typed and frozen, built once from defaults < a JSON file < environment
(``EMBER_*``) < command-line flags."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .daemons import DAEMON_ID
from .engine.sources import DEFAULT_MAX_IMAGE_PIXELS

DEFAULT_PORT = 50151


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"  # localhost by default; set 0.0.0.0 deliberately
    port: int = DEFAULT_PORT  # 0 picks a free port (tests)
    root: str = str(Path.home() / ".ember")  # registry, models, datasets, jobs, artifacts
    data_roots: tuple[str, ...] = ()  # folders whose files the daemon may read by path
    token: str | None = None  # bearer token required on every call (except health) when set (prefer token_file or EMBER_TOKEN: flags show in ps)
    token_file: str | None = None  # file holding the bearer token (its first line)
    tls_cert: str | None = None  # PEM certificate chain; with tls_key, serve TLS
    tls_key: str | None = None
    metrics_port: int = -1  # Prometheus /metrics on this port (host as above); -1 = off, 0 = a free port
    http_port: int = -1  # the read-only web dashboard (and /metrics) on this port; -1 = off, 0 = a free port
    log_format: str = "text"  # "text" (readable) or "json" (one JSON object per line)
    drain_s: float = 10.0  # on SIGTERM: seconds in-flight calls get to finish before the daemon stops
    max_message_bytes: int = 64 * 1024 * 1024  # larger requests get RESOURCE_EXHAUSTED
    cache_budget_bytes: int = 2 * 1024**3  # warm model cache (LRU) memory budget
    max_concurrent_jobs: int = 1  # training workers at once; more jobs queue
    rpc_threads: int = 48  # must exceed max_streams + max_heavy_calls: the rest stay free for health and quick calls
    torch_threads: int = 0  # intra-op threads for serving; 0 = all cores
    worker_start: str = "forkserver"  # how job workers start: forked from a warm forkserver, or "spawn" (cold, ~10 s of imports each)
    max_streams: int = 12  # long-lived streams at once (WatchJob, UploadDataset, DownloadArtifact, health Watch); more: RESOURCE_EXHAUSTED
    max_heavy_calls: int = 24  # Predict/Evaluate/Embed/Dump/Export/Fit/Resume/Transfer at once; more: RESOURCE_EXHAUSTED
    upload_idle_timeout_s: float = 60.0  # an upload stream that sends nothing for this long is cancelled
    max_predict_rows: int = 10_000  # rows per Predict/Evaluate/Embed call
    batch_max_rows: int = 64  # dynamic batching: rows of concurrent Predict/Embed calls run as one batch; 1 = off
    batch_max_delay_ms: float = 5.0  # how long a batch waits for more calls (only after a batch of several); 0 = off
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS  # pixels per image (Pillow's bomb guard); larger: INVALID_ARGUMENT
    max_json_depth: int = 16  # nesting of JSON a caller sends (rows, hyperparameter values)
    keep_versions: int = 0  # retention: versions kept per model after a fit (aliased and current always); 0 = all
    registry_checkpoint_s: int = 60  # seconds between WAL checkpoints of the registry (and at clean shutdown)
    registry_url: str = ""  # a shared PostgreSQL registry (postgresql+psycopg://user@host/db); "" = registry.sqlite under root
    daemon_id: str = ""  # this daemon's name among several on one registry (owner of the jobs it runs); "" = host name + a random suffix per start
    job_lease_s: float = 30.0  # several daemons: a running job's lease, renewed every third of it; a daemon silent this long has died

    @property
    def root_path(self) -> Path:
        return Path(self.root)


_ENV = {f.name: f"EMBER_{f.name.upper()}" for f in dataclasses.fields(Settings)}


def _coerce(name: str, value: Any) -> Any:
    f = Settings.__dataclass_fields__[name]
    default = f.default
    if name == "data_roots":
        if isinstance(value, str):
            return tuple(p for p in value.split(os.pathsep) if p)
        return tuple(value)
    if isinstance(default, int) and not isinstance(default, bool):
        return int(value)
    if isinstance(default, float):
        return float(value)
    return value


def check_settings(settings: Settings) -> Settings:
    """Settings that make sense together (else the daemon refuses to start, saying why)."""
    s = settings
    if s.token and s.token_file:
        raise SystemExit("emberd: give the token once: --token-file (or EMBER_TOKEN), not both")
    if s.token_file:
        try:
            token = next(iter(Path(s.token_file).read_text().split()), "")
        except OSError as e:
            raise SystemExit(f"emberd: cannot read --token-file {s.token_file!r}: {e.strerror}") from None
        if not token:
            raise SystemExit(f"emberd: --token-file {s.token_file!r} is empty")
        s = dataclasses.replace(s, token=token)
    for name in ("rpc_threads", "max_streams", "max_heavy_calls", "max_predict_rows", "max_image_pixels", "max_json_depth"):
        if getattr(s, name) < 1:
            raise SystemExit(f"emberd: {name} must be at least 1, got {getattr(s, name)}")
    if s.rpc_threads < s.max_streams + s.max_heavy_calls + 4:
        raise SystemExit(
            f"emberd: rpc_threads ({s.rpc_threads}) must be at least max_streams + max_heavy_calls + 4 "
            f"({s.max_streams + s.max_heavy_calls + 4}), so that health checks and quick calls always find a thread"
        )
    if s.worker_start not in ("forkserver", "spawn"):
        raise SystemExit(f"emberd: worker_start must be 'forkserver' or 'spawn', got {s.worker_start!r}")
    if s.log_format not in ("text", "json"):
        raise SystemExit(f"emberd: log_format is 'text' or 'json', got {s.log_format!r}")
    for name in ("metrics_port", "http_port"):
        if not -1 <= getattr(s, name) <= 65535:
            raise SystemExit(f"emberd: {name} must be -1 (off), 0 (any free port) or a port, got {getattr(s, name)}")
    if not 1 <= s.batch_max_rows <= 65_536:
        raise SystemExit(f"emberd: batch_max_rows must be 1 (no batching) to 65536, got {s.batch_max_rows}")
    if not 0 <= s.batch_max_delay_ms <= 1000:
        raise SystemExit(f"emberd: batch_max_delay_ms must be 0 (no batching) to 1000 ms, got {s.batch_max_delay_ms}")
    if s.registry_url and not s.registry_url.startswith(("postgresql", "sqlite")):
        raise SystemExit(f"emberd: registry_url must be a postgresql:// (or sqlite://) URL, got {s.registry_url.split(':', 1)[0]}:...")
    if s.daemon_id and not DAEMON_ID.fullmatch(s.daemon_id):
        raise SystemExit(f"emberd: daemon_id must be 1-128 letters, digits, '.', '_' or '-' (starting with a letter or digit), got {s.daemon_id!r}")
    if not 2 <= s.job_lease_s <= 3600:
        raise SystemExit(f"emberd: job_lease_s must be 2 to 3600 seconds, got {s.job_lease_s}")
    if not (s.drain_s >= 0):
        raise SystemExit(f"emberd: drain_s must be >= 0, got {s.drain_s}")
    if not (s.upload_idle_timeout_s > 0):
        raise SystemExit(f"emberd: upload_idle_timeout_s must be > 0, got {s.upload_idle_timeout_s}")
    return s


def load_settings(argv: Sequence[str] | None = None, env: dict[str, str] | None = None) -> Settings:
    env = dict(os.environ if env is None else env)
    ap = argparse.ArgumentParser(prog="emberd", description="Ember daemon: the gRPC API for the model lifecycle")
    ap.add_argument("--config", help="JSON settings file (keys as below)")
    for f in dataclasses.fields(Settings):
        flag = "--" + f.name.replace("_", "-")
        if f.name == "data_roots":
            ap.add_argument(flag, action="append", help="folder the daemon may read data from (repeatable)")
        else:
            ap.add_argument(flag, help=f"(env {_ENV[f.name]})")
    args = ap.parse_args(argv)
    values: dict[str, Any] = {}
    config_file = args.config or env.get("EMBER_CONFIG")
    if config_file:
        with open(config_file) as fh:
            values.update(json.load(fh))
    for name, var in _ENV.items():
        if var in env:
            values[name] = env[var]
    for name in _ENV:
        v = getattr(args, name)
        if v is not None:
            values[name] = v
    unknown = set(values) - set(_ENV)
    if unknown:
        raise SystemExit(f"emberd: unknown setting(s) {sorted(unknown)}; valid: {sorted(_ENV)}")
    return check_settings(Settings(**{k: _coerce(k, v) for k, v in values.items()}))
