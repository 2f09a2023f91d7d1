"""Atomic file writes: a reader never sees a half-written file, a crash leaves no partial one.

Everything the tool writes for a user to keep (model files, run state, history, metrics,
annotated images, labels) goes through :func:`atomic_path` or :func:`write_atomic`: the
content goes to a hidden temporary file beside the destination, which replaces the
destination by ``os.replace`` only once it is complete; on failure the temporary file is removed.
A write that fails (disk full, no permission, a parent that is a file) raises one
:class:`~yolo_cli.errors.YoloError` naming the destination. :func:`check_writable` refuses, before
any work, a destination that could not be written at the end.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from yolo_cli.errors import YoloError


@contextmanager
def atomic_path(path: str | Path, suffix: str = "", replace_folder: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on normal exit it replaces ``path``.

    suffix: kept at the end of the temporary name for writers that choose the format by the
    extension (``.keras``, ``.jpg``). The body may make a folder there instead (a dataset); it
    replaces ``path`` if that is an empty folder, or any folder with ``replace_folder`` (a
    SavedModel export replacing the previous one). An :class:`OSError` on the way (making the
    parent folders, writing, renaming) becomes :class:`YoloError` ``<path>: cannot write
    (<reason>)``.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp{suffix}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        if replace_folder and path.is_dir() and tmp.is_dir():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except OSError as e:
        raise YoloError(f"{path}: cannot write ({e.strerror or e})") from None
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            with suppress(OSError):  # a parent that could not be made holds nothing to remove
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


def check_writable(path: str | Path, folder: bool = False) -> Path:
    """Refuse, before any work, a file that could not be written at the end: a folder (unless
    ``folder``: the output is a folder that replaces any there), a path under a file, or one
    whose nearest existing folder refuses a new file (no permission, a read-only or virtual
    file system such as ``/proc``), found by creating and removing a temporary file there.
    Raises :class:`YoloError`; returns ``path``."""
    path = Path(path)
    if path.is_dir() and not folder:
        raise YoloError(f"{path}: is a folder, expected a file name")
    existing = next(p for p in (path.parent, *path.parent.parents) if p.exists())
    if not existing.is_dir():
        raise YoloError(f"{path}: cannot write ({existing} is a file)")
    probe = existing / f".{path.name}.{os.getpid()}.tmp"
    try:
        probe.touch(exist_ok=False)
        probe.unlink()
    except OSError as e:
        raise YoloError(f"{path}: cannot write ({e.strerror or e})") from None
    return path
