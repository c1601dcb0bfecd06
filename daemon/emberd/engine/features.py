"""Encoding a table once into tensors (pre-tokenized CSR text, decoded uint8 images,
standardized numbers, category indices) and cutting batches from it.

Text is tokenized once per dataset, without special tokens, into CSR form (flat ids +
offsets); ``collate_text`` places [CLS]/[SEP], truncates pairs longest-first and pads each
batch to its longest row (rounded up to a multiple of 8). Batches come from
``LengthBuckets``, which groups rows of similar length so that little compute goes to pads.

Collation runs as ``ember_kernels``' C++/CUDA ops (``env.kernels="ops"``, the default) or as
the eager code here (``"reference"``); ``kernel_ops`` picks one, says once which ran, and
never falls back from one to the other.
"""

from __future__ import annotations

import contextvars
import functools
import logging
import math
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from PIL import UnidentifiedImageError

# One definition of image decoding and pair truncation, shared with the torch-free ONNX
# runner: a bundle's predictions are made from exactly the inputs training saw.
from ember.preprocess import image_array, truncate_pair

from .data import Schema, numeric_values
from .errors import FailedPrecondition, InvalidArgument
from .sources import open_image

log = logging.getLogger(__name__)

__all__ = ["TokenCSR", "Encoded", "encode_table", "collate_text", "LengthBuckets", "Collator", "kernel_ops"]


# ---- which implementation runs collation and the fusion head ----------------------------
KERNELS = ("ops", "reference")
_announced: set[tuple[str, str, str]] = set()


@functools.cache
def _load_kernel_ops() -> Any:
    try:
        import ember_kernels
    except ImportError as e:
        raise FailedPrecondition(
            f"env.kernels='ops' needs the compiled ember_kernels extension, which cannot be imported ({e}). "
            "Build it with `.venv/bin/pip install --no-build-isolation -e ./kernels` (make install), "
            "or set env.kernels='reference' to run the eager torch code instead"
        ) from e
    return ember_kernels.ops


def kernel_ops(kernels: str, what: str | None = None, device: Any = "cpu") -> Any | None:
    """``ember_kernels.ops`` for ``kernels="ops"``, None for ``"reference"`` (the caller's
    eager code). A missing extension is an error, never a silent fallback. With ``what``,
    logs once per process which implementation runs it on which device."""
    if kernels not in KERNELS:
        raise InvalidArgument(f"env.kernels must be one of {KERNELS}, got {kernels!r}")
    ops = _load_kernel_ops() if kernels == "ops" else None
    key = (what or "", kernels, str(device))
    if what is not None and key not in _announced:
        _announced.add(key)
        how = "ember_kernels C++/CUDA ops" if ops is not None else "eager torch reference"
        logging.getLogger("emberd.engine").info("%s on %s: %s (env.kernels=%r)", what, device, how, kernels)
    return ops


@dataclass(frozen=True)
class TokenCSR:
    """Token ids of many rows: row i is ``ids[offsets[i]:offsets[i+1]]`` (no special tokens)."""

    ids: torch.Tensor  # int64, flat
    offsets: torch.Tensor  # int64, len n+1

    @property
    def lengths(self) -> torch.Tensor:
        return self.offsets[1:] - self.offsets[:-1]

    @classmethod
    def from_lists(cls, rows: Sequence[Sequence[int]]) -> "TokenCSR":
        lengths = torch.tensor([len(r) for r in rows], dtype=torch.int64)
        offsets = torch.zeros(len(rows) + 1, dtype=torch.int64)
        torch.cumsum(lengths, 0, out=offsets[1:])
        flat = torch.tensor([t for r in rows for t in r], dtype=torch.int64)
        return cls(flat, offsets)


@dataclass(frozen=True)
class SpecialTokens:
    cls_id: int
    sep_id: int
    pad_id: int


@dataclass
class Encoded:
    """One table encoded for one model; rows are addressed by index."""

    n: int
    text: list[TokenCSR]  # one per text column
    images: list[torch.Tensor]  # one uint8 (N, S, S, 3) tensor per image column
    numeric: torch.Tensor | None  # float32 (N, k)
    categorical: torch.Tensor | None  # int64 (N, c); 0 = unknown or missing
    labels: torch.Tensor | None  # int64 class indices or float32 standardized targets
    kept_rows: np.ndarray  # positions in the source frame (rows with unreadable images are dropped in fit)

    def lengths(self, pair_mode: str) -> np.ndarray:
        """Per-row token count that drives bucketing (0 when there is no text)."""
        if not self.text:
            return np.zeros(self.n, dtype=np.int64)
        lens = torch.stack([t.lengths for t in self.text])
        return (lens.sum(0) if pair_mode == "cross" else lens.max(0).values).numpy()


# ---- images -----------------------------------------------------------------------------
def _cell_name(v: Any) -> str:
    """An image cell as an error names it: a path, or the size of inline bytes / a data URI."""
    if isinstance(v, (bytes, bytearray)):
        return f"<{len(v)} bytes>"
    if isinstance(v, str):
        return f"<{v.partition(',')[0][:40]} of {len(v)} chars>" if v.startswith("data:") else v
    return repr(v)


def load_image(value: Any, size: int, what: str = "image") -> np.ndarray:
    """One image cell decoded as the ONNX runner decodes it, opened under the process's
    read policy (``sources``: confined paths, regular files only, a pixel limit)."""
    with open_image(value, what) as img:
        return image_array(img, size)


def decode_images(values: Sequence[Any], decode: Callable[[Any], Any]) -> tuple[list[Any | None], list[str]]:
    """``decode`` each value (path, bytes or data URI; never returning a str) on two threads: the
    results (None where it failed) and an error naming each value that could not be read."""
    def one(v: Any) -> Any:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return "missing value"
        try:
            return decode(v)
        except (OSError, ValueError, UnidentifiedImageError) as e:
            return f"{type(e).__name__}: {e}"

    with ThreadPoolExecutor(max_workers=2) as pool:  # each read in a copy of the caller's context (its read policy)
        results = [f.result() for f in [pool.submit(contextvars.copy_context().run, one, v) for v in values]]
    errors = []
    out: list[Any | None] = []
    for v, r in zip(values, results):
        if isinstance(r, str):
            name = _cell_name(v)
            errors.append(f"{name} ({r})")
            out.append(None)
        else:
            out.append(r)
    return out, errors


# ---- the whole table --------------------------------------------------------------------
def encode_table(
    df: pd.DataFrame,
    schema: Schema,
    tokenizer: Any | None,
    *,
    max_text_len: int,
    pair_mode: str,
    image_size: int,
    with_labels: bool,
    skip_bad_images: bool,
) -> Encoded:
    """Encode ``df`` for a model of ``schema``.

    Unreadable images: with ``skip_bad_images`` (fit) their rows are dropped with a warning
    naming the files; otherwise (predict, evaluate) they are an error naming them."""
    keep = np.ones(len(df), dtype=bool)
    images: list[np.ndarray] = []
    decoded_cols = []
    for col in schema.image:
        decoded, errors = decode_images(df[col].tolist(), lambda v, col=col: load_image(v, image_size, col))
        if errors:
            if not skip_bad_images:
                raise InvalidArgument(
                    f"{len(errors)} image(s) in column {col!r} cannot be read: {errors[:5]}; "
                    "fix or drop those rows"
                )
            log.warning("skipping %d row(s) with unreadable images in %r: %s", len(errors), col, errors[:5])
        keep &= np.array([d is not None for d in decoded])
        decoded_cols.append(decoded)
    if not keep.any():
        raise InvalidArgument("no row has a readable image; check the image paths")
    rows = np.flatnonzero(keep)
    for decoded in decoded_cols:
        images.append(np.stack([decoded[i] for i in rows]))
    df = df.iloc[rows]

    text: list[TokenCSR] = []
    if schema.text:
        assert tokenizer is not None
        # A pair joined into one sequence is truncated longest-first, which compares the
        # sides' full lengths: keep them whole. Alone, a text needs max_text_len - 2 tokens.
        cap = None if pair_mode == "cross" and len(schema.text) == 2 else max_text_len - 2
        for col in schema.text:
            values = ["" if pd.isna(v) else str(v) for v in df[col].tolist()]
            ids = tokenizer(values, add_special_tokens=False, truncation=cap is not None, max_length=cap)["input_ids"]
            text.append(TokenCSR.from_lists(ids))

    numeric = None
    if schema.numeric:
        cols = []
        for col in schema.numeric:
            mean, std = schema.numeric_stats[col]
            v = (numeric_values(df[col], col) - mean) / std
            cols.append(np.nan_to_num(v, nan=0.0, posinf=0.0, neginf=0.0))
        numeric = torch.from_numpy(np.stack(cols, 1).astype(np.float32))

    categorical = None
    if schema.categorical:
        cols = []
        for col in schema.categorical:
            index = {c: i + 1 for i, c in enumerate(schema.categories[col])}
            cols.append([0 if pd.isna(v) else index.get(str(v), 0) for v in df[col].tolist()])
        categorical = torch.tensor(cols, dtype=torch.int64).T.contiguous()

    labels = None
    if with_labels:
        y = schema.encode_labels(df[schema.label])
        labels = torch.from_numpy(y)
    return Encoded(
        n=len(rows),
        text=text,
        images=[torch.from_numpy(im) for im in images],
        numeric=numeric,
        categorical=categorical,
        labels=labels,
        kept_rows=rows,
    )


# ---- batches ----------------------------------------------------------------------------
def pad_multiple_for(setting: int, device: str = "cpu") -> int:
    """``env.pad_to_multiple_of``: 0 means 8 on GPU (tensor cores) and 1 on CPU, where
    rounding short SST-2 batches up to 8 would add about a fifth more tokens for nothing."""
    return setting or (8 if device == "cuda" else 1)


def padded_length(longest: int, max_len: int, multiple: int) -> int:
    return min(max_len, -(-longest // multiple) * multiple)


def collate_text(
    columns: Sequence[TokenCSR],
    rows: Sequence[int],
    special: SpecialTokens,
    max_len: int,
    pad_multiple: int = 8,
    *,
    kernels: str = "ops",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``input_ids``, ``attention_mask``, ``token_type_ids`` for one sequence per row:
    ``[CLS] a [SEP]`` for one column, ``[CLS] a [SEP] b [SEP]`` for two (longest-first
    truncation to ``max_len``), padded to the batch's longest rounded up to ``pad_multiple``
    (at most ``max_len``). ``kernels``: ``"ops"`` (the C++ op) or ``"reference"`` (the
    per-row loop below); both give identical tensors."""
    if len(columns) not in (1, 2):
        raise ValueError("collate_text takes one column or a pair")
    ops = kernel_ops(kernels, "text collation", columns[0].ids.device)
    if ops is None:
        return _collate_text_reference(columns, rows, special, max_len, pad_multiple)
    b = columns[1] if len(columns) == 2 else None
    return ops.collate_text(
        columns[0].ids,
        columns[0].offsets,
        torch.as_tensor(rows, dtype=torch.int64),
        ids_b=None if b is None else b.ids,
        offsets_b=None if b is None else b.offsets,
        cls_id=special.cls_id,
        sep_id=special.sep_id,
        pad_id=special.pad_id,
        max_len=max_len,
        pad_multiple=pad_multiple,
    )


def _collate_text_reference(
    columns: Sequence[TokenCSR], rows: Sequence[int], special: SpecialTokens, max_len: int, pad_multiple: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    pieces = []
    for r in rows:
        spans = [c.ids[c.offsets[r] : c.offsets[r + 1]] for c in columns]
        if len(spans) == 1:
            a = spans[0][: max_len - 2]
            pieces.append((a, None))
        else:
            la, lb = truncate_pair(len(spans[0]), len(spans[1]), max_len - 3)
            pieces.append((spans[0][:la], spans[1][:lb]))
    lengths = [len(a) + 2 + (0 if b is None else len(b) + 1) for a, b in pieces]
    width = padded_length(max(lengths), max_len, pad_multiple)
    ids = torch.full((len(rows), width), special.pad_id, dtype=torch.int64)
    mask = torch.zeros((len(rows), width), dtype=torch.int64)
    types = torch.zeros((len(rows), width), dtype=torch.int64)
    for i, (a, b) in enumerate(pieces):
        la = len(a)
        ids[i, 0] = special.cls_id
        ids[i, 1 : 1 + la] = a
        ids[i, 1 + la] = special.sep_id
        if b is not None:
            lb = len(b)
            ids[i, 2 + la : 2 + la + lb] = b
            ids[i, 2 + la + lb] = special.sep_id
            types[i, 2 + la : 3 + la + lb] = 1
        mask[i, : lengths[i]] = 1
    return ids, mask, types


class Collator:
    """Cuts a batch (a list of row indices) out of an ``Encoded`` table."""

    def __init__(
        self,
        enc: Encoded,
        special: SpecialTokens | None,
        *,
        max_text_len: int,
        pair_mode: str,
        pad_multiple: int,
        mean: Sequence[float],
        std: Sequence[float],
        hflip: bool = False,
        seed: int = 0,
        kernels: str = "ops",
    ) -> None:
        kernel_ops(kernels)  # an unknown value or a missing extension fails here, before any batch
        self.kernels = kernels
        self.enc = enc
        self.special = special
        self.max_text_len = max_text_len
        self.pair_mode = pair_mode
        self.pad_multiple = pad_multiple
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1) * 255.0
        self.std = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1) * 255.0
        self.hflip = hflip
        self.gen = torch.Generator().manual_seed(seed)

    def __call__(self, rows: list[int]) -> dict[str, Any]:
        enc = self.enc
        idx = torch.as_tensor(rows, dtype=torch.int64)
        batch: dict[str, Any] = {"rows": idx}
        if enc.text:
            assert self.special is not None
            if self.pair_mode == "cross" or len(enc.text) == 1:
                if len(enc.text) > 2:
                    raise InvalidArgument("text_pair_mode='cross' joins at most two text columns; use 'siamese'")
                groups = [enc.text]
            else:
                groups = [[c] for c in enc.text]
            seqs = [
                collate_text(g, rows, self.special, self.max_text_len, self.pad_multiple, kernels=self.kernels)
                for g in groups
            ]
            width = max(s[0].shape[1] for s in seqs)
            stacked = []
            for part in range(3):
                pad = self.special.pad_id if part == 0 else 0
                stacked.append(
                    torch.stack([torch.nn.functional.pad(s[part], (0, width - s[part].shape[1]), value=pad) for s in seqs])
                )
            batch["text"] = tuple(stacked)  # each (columns, batch, length)
        if enc.images:
            batch["image"] = [self.collate_images(im[idx]) for im in enc.images]
        if enc.numeric is not None:
            batch["numeric"] = enc.numeric[idx]
        if enc.categorical is not None:
            batch["categorical"] = enc.categorical[idx]
        if enc.labels is not None:
            batch["labels"] = enc.labels[idx]
        return batch

    def collate_images(self, hwc: torch.Tensor) -> torch.Tensor:
        """uint8 (N, H, W, 3) to normalized float (N, 3, H, W), mirroring a random half when
        training with hflip (the same draws whichever implementation runs)."""
        flip = torch.rand(len(hwc), generator=self.gen) < 0.5 if self.hflip else None
        ops = kernel_ops(self.kernels, "image collation", hwc.device)
        if ops is not None:
            return ops.collate_images(hwc, self.mean.view(-1), self.std.view(-1), flip)
        x = hwc.permute(0, 3, 1, 2).float()
        if flip is not None:
            x[flip] = x[flip].flip(-1)
        return (x - self.mean) / self.std


# What one more forward pass costs, in padded tokens: MiniLM on this machine's 2 cores costs
# about 6 ms per batch plus 0.135 ms per padded token (batches of 1-32 rows of 8-64 tokens
# fit that line within 10 %), so a pass is worth about 45 tokens of padding.
EVAL_BATCH_OVERHEAD_TOKENS = 45


def eval_batches(lengths: np.ndarray, max_rows: int, overhead: int = EVAL_BATCH_OVERHEAD_TOKENS) -> list[np.ndarray]:
    """Rows sorted by length, cut into batches of at most ``max_rows`` so that the padded
    tokens plus ``overhead`` per batch, summed over the batches, are the least there can be
    (exact: dynamic programming over the cut points of the sorted rows, O(rows x max_rows)).

    Fixed slices of the sorted rows pad a small batch to its longest row: 16 requests of
    4-60 tokens coalesced by the dynamic batcher cost one 16 x 60 pass; cut where lengths
    jump, they cost a few passes over about half the tokens. Large tables stay in batches of
    ``max_rows`` but where lengths jump (sorted neighbours already have similar lengths)."""
    order = np.argsort(lengths, kind="stable")
    n = len(order)
    if n == 0:
        return []
    length = np.maximum(np.asarray(lengths, dtype=np.int64)[order], 1)  # a row without text still costs a slot
    best = np.zeros(n + 1)  # best[j]: the least cost of the first j sorted rows
    start = np.zeros(n + 1, dtype=np.int64)  # where the last batch of that best starts
    for j in range(1, n + 1):
        lo = max(0, j - max_rows)
        cost = best[lo:j] + (j - np.arange(lo, j)) * length[j - 1] + overhead
        k = int(np.argmin(cost))  # the first least: the longest batch on ties
        best[j], start[j] = cost[k], lo + k
    batches = []
    j = n
    while j > 0:
        batches.append(order[start[j] : j])
        j = int(start[j])
    return batches[::-1]


class LengthBuckets(torch.utils.data.Sampler[list[int]]):
    """Batches of rows of similar length.

    Training (``shuffle``): each epoch shuffles, sorts within windows of 50 batches and
    shuffles the batch order, so batches are random but padded little. Evaluation:
    ``eval_batches`` (sorted once, cut where padding would cost more than a pass).

    Distributed (``world`` > 1): every rank draws the same epoch's batches and keeps every
    ``world``-th one from its ``rank``, wrapping around so that all ranks get the same
    number of batches (a rank with one step more would wait forever in its all-reduce).
    Lightning's DistributedSampler is not injected for a custom batch sampler: this is it."""

    def __init__(self, lengths: np.ndarray, batch_size: int, *, shuffle: bool, seed: int = 0, rank: int = 0, world: int = 1) -> None:
        self.lengths = np.asarray(lengths)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = 0
        self.rank = rank
        self.world = world

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _batches(self) -> int:
        return -(-len(self.lengths) // self.batch_size)

    def __len__(self) -> int:
        if not self.shuffle:
            return len(eval_batches(self.lengths, self.batch_size))
        return -(-self._batches() // self.world)

    def __iter__(self) -> Iterator[list[int]]:
        n, bs = len(self.lengths), self.batch_size
        if not self.shuffle:
            for rows in eval_batches(self.lengths, bs):
                yield rows.tolist()
            return
        rng = np.random.default_rng([self.seed, self.epoch])
        perm = rng.permutation(n)
        window = bs * 50
        batches = []
        for s in range(0, n, window):
            chunk = perm[s : s + window]
            chunk = chunk[np.argsort(self.lengths[chunk], kind="stable")]
            batches += [chunk[i : i + bs].tolist() for i in range(0, len(chunk), bs)]
        order = rng.permutation(len(batches))
        if self.world > 1:
            order = order[(self.rank + self.world * np.arange(len(self))) % len(order)]
        for i in order:
            yield batches[i]
