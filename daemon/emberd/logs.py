"""The daemon's log: readable text by default, or one JSON object per line
(``--log-format json``) with the fields an operator filters on (request id, method, model,
job id, duration, code); and third-party noise (Lightning's tips, per-weight loading bars,
deprecation warnings) kept out of it. Configured only from ``__main__`` (``configure``)."""

from __future__ import annotations

import datetime
import json
import logging
import os
import sys
import warnings
from typing import Any

# Fields an access-log record carries (interceptors.record) and JSON lines write out
FIELDS = ("request_id", "method", "model", "job_id", "rank", "duration_ms", "code")

# Loggers whose INFO lines are chatter, not events of the daemon's
NOISY = ("lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning", "transformers", "timm", "urllib3", "filelock",
         "huggingface_hub", "torch.distributed", "PIL")
NOISE_PHRASES = ("Tip:", "💡", "litlogger", "LitLogger", "Loading weights", "GPU available:", "TPU available:", "HPU available:",
                 "You are using a CUDA device", "LOCAL_RANK:", "`Trainer.fit` stopped", "Using default `ModelCheckpoint`")

# What spawned workers inherit (they train with Lightning, transformers and timm)
QUIET_ENV = {
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TRANSFORMERS_VERBOSITY": "error",
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
    "TQDM_DISABLE": "1",
    "PYTHONWARNINGS": "ignore::DeprecationWarning,ignore::FutureWarning",
}


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (UTC, ISO 8601), level, logger, message, the
    access-log fields present, and the exception if any."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for f in FIELDS:
            v = getattr(record, f, None)
            if v is not None:
                out[f] = v
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, default=str)


class NoiseFilter(logging.Filter):
    """Drops third-party chatter: below WARNING from the noisy libraries, and any line
    carrying one of the known tip or progress phrases."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.split(".")[0] in {n.split(".")[0] for n in NOISY} and record.levelno < logging.WARNING:
            return False
        msg = record.getMessage()
        return not any(p in msg for p in NOISE_PHRASES)


def handler(fmt: str, stream: Any = None) -> logging.Handler:
    h = logging.StreamHandler(stream or sys.stderr)
    if fmt == "json":
        h.setFormatter(JsonFormatter())
    else:
        h.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    h.addFilter(NoiseFilter())
    return h


def _adopt_library_loggers() -> None:
    """The noisy libraries log through our handler, warnings and up. Lightning gives its
    loggers handlers of its own when imported (and stops them propagating), so it is imported
    here, once, and that is undone."""
    try:
        import lightning  # noqa: F401 - the daemon and its workers train with it anyway
    except ImportError:
        pass
    for name in NOISY:
        lg = logging.getLogger(name)
        for h in list(lg.handlers):
            lg.removeHandler(h)
        lg.propagate = True
        lg.setLevel(logging.WARNING)


def configure(fmt: str = "text", level: int = logging.INFO) -> None:
    """The root logger writes through one handler in ``fmt``; warnings go to the log (and
    deprecation warnings nowhere); spawned workers inherit the quiet environment and the
    format (``configure_worker``)."""
    for k, v in QUIET_ENV.items():
        os.environ.setdefault(k, v)
    os.environ["EMBER_LOG_FORMAT"] = fmt
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler(fmt))
    root.setLevel(level)
    _adopt_library_loggers()
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    logging.captureWarnings(True)


class _JobFields(logging.Filter):
    def __init__(self, job_id: str, rank: int) -> None:
        super().__init__()
        self.job_id, self.rank = job_id, rank

    def filter(self, record: logging.LogRecord) -> bool:
        record.job_id = self.job_id
        record.rank = self.rank
        return True


def configure_worker(job_id: str, rank: int) -> None:
    """A training worker's log: the daemon's format (``EMBER_LOG_FORMAT``), WARNING and
    above, each line with its job id and rank; set before Lightning is imported, so that it
    adds no handler of its own and its tips go through the noise filter."""
    fmt = os.environ.get("EMBER_LOG_FORMAT", "text")
    for k, v in QUIET_ENV.items():
        os.environ.setdefault(k, v)
    h = handler(fmt)
    if fmt != "json":
        h.setFormatter(logging.Formatter(f"%(asctime)s job {job_id[:8]} rank {rank} %(name)s: %(message)s"))
    h.addFilter(_JobFields(job_id, rank))
    h.setLevel(logging.WARNING)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(h)
    root.setLevel(logging.WARNING)
    _adopt_library_loggers()
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    logging.captureWarnings(True)
