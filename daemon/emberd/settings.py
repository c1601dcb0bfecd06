"""Daemon settings: typed and frozen, built once from defaults < a JSON file < environment
(``EMBER_*``) < command-line flags."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

DEFAULT_PORT = 50151


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"  # localhost by default; set 0.0.0.0 deliberately
    port: int = DEFAULT_PORT  # 0 picks a free port (tests)
    root: str = str(Path.home() / ".ember")  # registry, models, datasets, jobs, artifacts
    data_roots: tuple[str, ...] = ()  # folders whose files the daemon may read by path
    token: str | None = None  # bearer token required on every call (except health) when set
    tls_cert: str | None = None  # PEM certificate chain; with tls_key, serve TLS
    tls_key: str | None = None
    max_message_bytes: int = 64 * 1024 * 1024  # larger requests get RESOURCE_EXHAUSTED
    cache_budget_bytes: int = 2 * 1024**3  # warm model cache (LRU) memory budget
    max_concurrent_jobs: int = 1  # training workers at once; more jobs queue
    rpc_threads: int = 16
    torch_threads: int = 0  # intra-op threads for serving; 0 = all cores
    keep_versions: int = 0  # retention: versions kept per model after a fit (aliased and current always); 0 = all
    registry_checkpoint_s: int = 60  # seconds between WAL checkpoints of the registry (and at clean shutdown)

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
    return value


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
    return Settings(**{k: _coerce(k, v) for k, v in values.items()})
