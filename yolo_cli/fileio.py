"""Atomic file writes: a reader never sees a half-written file, a crash leaves no partial one.

Everything the tool writes for a user to keep (model files, run state, history, metrics,
annotated images, labels) goes through :func:`atomic_path` or :func:`write_atomic`: the
content goes to a hidden temporary file beside the destination, which replaces the
destination by ``os.replace`` only once it is complete; on failure the temporary file is removed.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: str | Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on normal exit it replaces ``path``.

    suffix: kept at the end of the temporary name for writers that choose the format by the
    extension (``.keras``, ``.jpg``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp{suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_atomic(path: str | Path, data: str | bytes) -> Path:
    """Write ``data`` (text as UTF-8) to ``path`` atomically, flushed to disk; returns ``path``."""
    raw = data.encode() if isinstance(data, str) else data
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(raw)
            f.flush()
            os.fsync(f.fileno())
    return Path(path)
