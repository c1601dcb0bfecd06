"""Reading what a caller names: image cells (a path, bytes or a base64 data URI) and paths.

A library process reads every path as given. A daemon serves strangers, so every call it
serves runs under its read policy (``reading_under(policy)``, set by its interceptor around
each RPC; a worker process sets it once with ``set_read_policy``). Under a policy every
path is resolved (symlinks followed) and must lie under one of the roots, or the
read is PERMISSION_DENIED with a message that never says whether the file exists; only
regular files are opened (a FIFO or a device is refused, never waited on); and an image
with more pixels than the limit is INVALID_ARGUMENT before it is decoded.

Torch-free: the daemon's RPC threads use it to admit requests before any work.
"""

from __future__ import annotations

import contextlib
import contextvars
import io
import os
import stat
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ember.preprocess import image_source

from .errors import InvalidArgument, NotFound, PermissionDenied

__all__ = [
    "ReadPolicy",
    "set_read_policy",
    "reading_under",
    "confine",
    "read_regular_file",
    "open_image",
    "ImageTooLarge",
    "image_bytes",
    "is_image_path",
    "DEFAULT_MAX_IMAGE_PIXELS",
]

# Pillow's decompression-bomb guard (it warns above this and refuses above twice it).
DEFAULT_MAX_IMAGE_PIXELS = 89_478_485
MAX_IMAGE_FILE_BYTES = 256 * 1024 * 1024  # an image cell's file is read whole: bound it


@dataclass(frozen=True)
class ReadPolicy:
    roots: tuple[Path, ...] | None = None  # None: any path (a library process); else resolved roots
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS

    @classmethod
    def confined(cls, roots: Iterable[str | os.PathLike], max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> "ReadPolicy":
        return cls(tuple(Path(r).resolve() for r in roots), int(max_image_pixels))

    def to_dict(self) -> dict[str, Any]:
        return {"roots": None if self.roots is None else [str(r) for r in self.roots], "max_image_pixels": self.max_image_pixels}

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "ReadPolicy":
        if not d:
            return cls()
        roots = d.get("roots")
        return cls(None if roots is None else tuple(Path(r) for r in roots), int(d.get("max_image_pixels") or DEFAULT_MAX_IMAGE_PIXELS))


class ImageTooLarge(InvalidArgument):
    """An image with more pixels than the read policy allows."""


# A context variable, not a global: an in-process daemon (tests, embedding) confines its RPCs
# without confining the library code beside it. Threads that read for a call copy the
# caller's context (``features.decode_images`` does).
_policy: contextvars.ContextVar[ReadPolicy] = contextvars.ContextVar("ember_read_policy", default=ReadPolicy())  # noqa: B039 - frozen


def set_read_policy(policy: ReadPolicy) -> None:
    """The policy of this context from now on (a worker process sets it once, at start)."""
    _policy.set(policy)


@contextlib.contextmanager
def reading_under(policy: ReadPolicy) -> Iterator[None]:
    """Run the block (one RPC) under ``policy``."""
    token = _policy.set(policy)
    try:
        yield
    finally:
        _policy.reset(token)


def _under(real: Path, roots: Sequence[Path]) -> bool:
    return any(real == r or r in real.parents for r in roots)


def confine(path: str | os.PathLike, what: str, *, kind: str = "file", policy: ReadPolicy | None = None) -> Path:
    """``path`` resolved, checked against the policy: under a root (else PERMISSION_DENIED,
    saying nothing of whether it exists), then present (NOT_FOUND) and of ``kind``
    ("file": a regular file; "dir": a folder; "any")."""
    policy = policy or _policy.get()
    raw = os.fspath(path)
    if "\x00" in raw:
        raise InvalidArgument(f"{what}: a path cannot contain NUL bytes")
    p = Path(raw)
    if policy.roots is not None and not p.is_absolute():
        raise InvalidArgument(f"{what}: path {raw!r} must be absolute (a file under the daemon's --data-roots)")
    try:
        real = p.resolve()
    except (OSError, RuntimeError):  # a symlink loop
        real = None
    if policy.roots is not None and (real is None or not _under(real, policy.roots)):
        raise PermissionDenied(
            f"{what}: path {raw!r} is not readable by this daemon: it may only read files under its data roots "
            f"{[str(r) for r in policy.roots]}. Upload the table (DatasetService.UploadDataset), send images inline "
            "(bytes or data URIs), or ask the operator to add a root with --data-roots"
        )
    if real is None:
        raise InvalidArgument(f"{what}: path {raw!r} cannot be resolved (a symlink loop?)")
    try:
        st = real.stat()
    except OSError:
        raise NotFound(f"{what}: no such file {raw!r}") from None
    if kind == "file" and not stat.S_ISREG(st.st_mode):
        raise InvalidArgument(f"{what}: {raw!r} is not a regular file (only regular files are read)")
    if kind == "dir" and not stat.S_ISDIR(st.st_mode):
        raise InvalidArgument(f"{what}: {raw!r} is not a folder")
    return real


def read_regular_file(path: str | os.PathLike, what: str, *, limit: int = MAX_IMAGE_FILE_BYTES, policy: ReadPolicy | None = None) -> bytes:
    """The bytes of a confined regular file. Opened without blocking and checked on the
    open descriptor, so a FIFO, a device, or a file swapped for one after ``confine``, is
    refused at once instead of hanging the caller."""
    policy = policy or _policy.get()
    real = confine(path, what, policy=policy)
    try:
        fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        raise NotFound(f"{what}: cannot open {os.fspath(path)!r} ({e.strerror})") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise InvalidArgument(f"{what}: {os.fspath(path)!r} is not a regular file (only regular files are read)")
        opened = f"/proc/self/fd/{f.fileno()}"
        roots = policy.roots
        if roots is not None and os.path.exists(opened) and not _under(Path(os.path.realpath(opened)), roots):
            raise PermissionDenied(f"{what}: path {os.fspath(path)!r} is not readable by this daemon (outside its data roots)")
        if st.st_size > limit:
            raise InvalidArgument(f"{what}: {os.fspath(path)!r} is {st.st_size} bytes; an image file may be at most {limit}")
        return f.read(limit + 1)


def is_image_path(value: Any) -> bool:
    """A cell that names a file (not inline bytes, not a data URI, not missing)."""
    return isinstance(value, str) and not value.startswith("data:")


def image_bytes(value: Any, what: str = "image", *, policy: ReadPolicy | None = None) -> bytes:
    """An image cell's encoded bytes: a path is read under the read policy; inline bytes and
    base64 data URIs (RFC 2397) as the ONNX runner reads them (``ember.preprocess.image_source``).
    A malformed URI is INVALID_ARGUMENT."""
    if is_image_path(value):
        return read_regular_file(value, what, policy=policy)
    if not isinstance(value, (str, bytes, bytearray)):
        raise InvalidArgument(f"{what}: an image cell holds a path, bytes or a data URI, not {type(value).__name__}")
    try:
        return image_source(value).getvalue()
    except ValueError as e:  # a header that is not base64, or bytes that are not (binascii.Error)
        raise InvalidArgument(f"{what}: {e}") from None


def open_image(value: Any, what: str = "image", *, policy: ReadPolicy | None = None) -> Any:
    """A ``PIL.Image`` opened (header read, pixels not yet decoded) from an image cell,
    refused as INVALID_ARGUMENT if it has more pixels than the policy allows."""
    from PIL import Image

    policy = policy or _policy.get()
    data = image_bytes(value, what, policy=policy)
    limit = policy.max_image_pixels
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError:  # Pillow's own guard (twice its MAX_IMAGE_PIXELS) caps ours
        raise ImageTooLarge(f"{what}: an image over this daemon's limit of {limit} pixels (--max-image-pixels); send it smaller") from None
    if img.width * img.height > limit:
        size = f"{img.width}x{img.height}"
        img.close()
        raise ImageTooLarge(
            f"{what}: an image of {size} pixels is over this daemon's limit of {limit} pixels "
            "(--max-image-pixels); send it smaller"
        )
    return img
