"""Dynamic batching: concurrent Predict and Embed calls on one warm model version are
coalesced into one forward pass (Triton's dynamic batcher, run by the RPC threads).

Each call queues its slice and waits. One waiting thread at a time leads: it waits for the
batch to fill, takes the model's lock (the lock Dump, Export and Evaluate take too), drops
the slices whose callers went away (never computed), runs the rest as one frame and hands
each caller its own rows of the result. A batch that fails is run again slice by slice, so
that a bad slice fails alone.

The wait: up to ``max_delay_s`` from when the leader starts, and only until as many calls
are queued as the model's last batch held (or ``max_rows`` rows). So a lone caller never
waits (its last batch was itself), and callers that came together (closed-loop clients, a
burst) are given a moment to come back together, rather than the first of them running
alone while the rest queue behind it. Calls that arrive while a batch runs join the next
one whatever the delay."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd

from .engine.errors import Cancelled


@dataclass(frozen=True)
class BatchLimits:
    max_rows: int = 64  # rows in one batch (a single slice may be larger: it runs alone)
    max_delay_s: float = 0.005  # how long a batch waits for more calls; 0 (or max_rows 1): no batching

    @property
    def coalescing(self) -> bool:
        return self.max_rows > 1 and self.max_delay_s > 0


@dataclass(eq=False)
class _Slice:
    kind: str  # slices of one kind share a batch (their ``run`` is the same computation)
    frame: pd.DataFrame
    run: Callable[[pd.DataFrame], Any]
    alive: Callable[[], bool]
    done: bool = False
    result: Any = None
    error: BaseException | None = None


class Batcher:
    """The queue of one warm model version; ``lock`` is the model's lock."""

    def __init__(self, lock: threading.Lock) -> None:
        self.lock = lock
        self._cv = threading.Condition()
        self._queue: list[_Slice] = []
        self._leading = False
        self._last_calls = 1  # calls in the last batch: the hint that more are coming

    def queued(self) -> int:
        with self._cv:
            return len(self._queue)

    def run(
        self, kind: str, frame: pd.DataFrame, run: Callable[[pd.DataFrame], Any], alive: Callable[[], bool],
        limits: BatchLimits, observe: Callable[[int, int], None],
    ) -> Any:
        """``run(frame)``, computed alone or with other callers' slices of the same ``kind``
        (``run`` must map each row independently and return something sliceable by rows).
        ``observe(calls, rows)`` is told each batch's size. Cancelled when the caller went
        away before its slice was computed."""
        if not limits.coalescing:  # today's behaviour: each slice alone under the model's lock
            with self.lock:
                if not alive():
                    raise Cancelled("the caller went away before its rows were computed")
                observe(1, len(frame))
                return run(frame)
        mine = _Slice(kind, frame, run, alive)
        with self._cv:
            self._queue.append(mine)
            self._cv.notify_all()
        while True:
            with self._cv:
                while not mine.done and self._leading:
                    self._cv.wait()
                if mine.done:
                    break
                self._leading = True
            try:
                self._lead(limits, observe)
            finally:
                with self._cv:
                    self._leading = False
                    self._cv.notify_all()
        if mine.error is not None:
            raise mine.error
        return mine.result

    def _lead(self, limits: BatchLimits, observe: Callable[[int, int], None]) -> None:
        with self._cv:
            # The last batch's callers are likely to come back (closed-loop clients, a burst):
            # wait up to the delay for as many calls as it had, or a full batch.
            deadline = time.monotonic() + limits.max_delay_s
            while (
                len(self._queue) < self._last_calls
                and sum(len(s.frame) for s in self._queue) < limits.max_rows
                and (left := deadline - time.monotonic()) > 0
            ):
                self._cv.wait(left)
        with self.lock:
            with self._cv:
                batch = self._take(limits.max_rows)
                if not batch:
                    return
                self._last_calls = len(batch)
            try:
                observe(len(batch), sum(len(s.frame) for s in batch))
                _compute(batch)
            finally:
                with self._cv:
                    for s in batch:
                        if not s.done:  # interrupted: never leave a caller waiting
                            s.error, s.done = s.error or RuntimeError("the batch stopped before this slice was computed"), True

    def _take(self, max_rows: int) -> list[_Slice]:
        """The oldest live slice and the live slices after it of its kind that fit in
        ``max_rows``, in order; slices whose callers went away are dropped, uncomputed."""
        batch: list[_Slice] = []
        rest: list[_Slice] = []
        rows = 0
        for s in self._queue:
            if not s.alive():
                s.error, s.done = Cancelled("the caller went away before its rows were computed"), True
            elif not batch or (s.kind == batch[0].kind and rows + len(s.frame) <= max_rows):
                batch.append(s)
                rows += len(s.frame)
            else:
                rest.append(s)
        self._queue = rest
        return batch


def _compute(batch: list[_Slice]) -> None:
    """Each slice's result (or error): the batch in one call, else (it failed) each alone."""
    if len(batch) > 1:
        try:
            out = batch[0].run(pd.concat([s.frame for s in batch], ignore_index=True))
        except Exception:  # noqa: BLE001 - one bad slice: find it by running each alone below
            pass
        else:
            start = 0
            for s in batch:
                s.result, s.done = out[start : start + len(s.frame)], True
                start += len(s.frame)
            return
    for s in batch:
        try:
            s.result = s.run(s.frame)
        except Exception as e:  # noqa: BLE001 - handed to its own caller
            s.error = e
        s.done = True
