"""The warm registry: loaded model versions in an LRU cache bounded by a memory budget,
so Predict/Evaluate/Embed on a warm model cost only the forward pass."""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .batching import Batcher
from .engine import Predictor

log = logging.getLogger("emberd.cache")


@dataclass
class Entry:
    predictor: Predictor
    size_bytes: int
    lock: threading.Lock = field(default_factory=threading.Lock)  # tokenizers are not re-entrant
    stamp: Any = None  # what ``stamp(name, version)`` said when it was loaded
    batcher: Batcher = field(init=False)  # coalesces concurrent Predict/Embed calls; computes under ``lock``

    def __post_init__(self) -> None:
        self.batcher = Batcher(self.lock)


def model_bytes(p: Predictor) -> int:
    net = p._require_model().net
    return sum(t.numel() * t.element_size() for t in [*net.parameters(), *net.buffers()])


class ModelCache:
    """``stamp(name, version)`` is a cheap fingerprint of a version's files (a stat): a hit
    whose fingerprint changed (weights deleted or replaced behind the daemon's back) is
    dropped and loaded again, so the cache never serves weights that are gone."""

    def __init__(
        self, budget_bytes: int, load: Callable[[str, int], Predictor], stamp: Callable[[str, int], Any] = lambda n, v: None
    ) -> None:
        self.budget = budget_bytes
        self._load = load
        self._stamp = stamp
        self._entries: OrderedDict[tuple[str, int], Entry] = OrderedDict()
        self._lock = threading.Lock()
        self._loading: dict[tuple[str, int], threading.Lock] = {}
        self.hits = self.misses = self.evictions = 0

    def get(self, name: str, version: int) -> Entry:
        key = (name, version)
        stamp = self._stamp(name, version)
        with self._lock:
            e = self._entries.get(key)
            if e is not None and e.stamp != stamp:
                log.warning("%s@%d changed on disk since it was loaded: dropped from the cache", name, version)
                del self._entries[key]
                e = None
            if e is not None:
                self._entries.move_to_end(key)
                self.hits += 1
                return e
            self.misses += 1
            loading = self._loading.setdefault(key, threading.Lock())
        with loading:  # one load per key, however many callers wait for it
            with self._lock:
                e = self._entries.get(key)
                if e is not None:
                    return e
            p = self._load(name, version)
            e = Entry(p, model_bytes(p), stamp=stamp)
            with self._lock:
                self._entries[key] = e
                self._loading.pop(key, None)
                while self.bytes() > self.budget and len(self._entries) > 1:
                    old, _ = self._entries.popitem(last=False)
                    self.evictions += 1
                    log.info("evicted %s@%d (cache over its %d-byte budget)", *old, self.budget)
            return e

    def drop(self, name: str, version: int | None = None) -> None:
        with self._lock:
            for key in [k for k in self._entries if k[0] == name and version in (None, k[1])]:
                del self._entries[key]

    def bytes(self) -> int:
        return sum(e.size_bytes for e in self._entries.values())

    def stats(self) -> dict[str, object]:
        with self._lock:
            return {
                "hits": self.hits,
                "misses": self.misses,
                "evictions": self.evictions,
                "bytes": self.bytes(),
                "budget": self.budget,
                "cached": [f"{n}@{v}" for n, v in self._entries],
            }
