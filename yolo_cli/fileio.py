"""Atomic file writes: a reader never sees a half-written file, a crash leaves no partial one.

Everything the tool writes for a user to keep (model files, run state, history, metrics,
annotated images and videos, labels, datasets, exports) goes through :class:`AtomicTarget`,
:func:`atomic_path` or :func:`write_atomic`: the content goes to a hidden temporary file beside
the destination, which replaces the destination by ``os.replace`` only once it is complete; on
failure the temporary file is removed.
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


class AtomicTarget:
    """A hidden temporary path ``tmp`` beside ``path`` (``.<name>.<pid>.tmp<suffix>``, its parent
    folders made) that :meth:`commit` moves onto ``path`` and :meth:`discard` removes: the one
    atomic write, for writers that outlive a ``with`` block (a video written frame by frame).

    suffix: kept at the end of the temporary name for writers that choose the format by the
    extension (``.keras``, ``.jpg``, ``.mp4``). ``tmp`` may be made a folder instead (a dataset);
    it replaces ``path`` if that is an empty folder, or any folder with ``replace_folder`` (a
    SavedModel export replacing the previous one). An :class:`OSError` (making the parent
    folders, renaming) becomes :class:`YoloError` ``<path>: cannot write (<reason>)``.
    """

    def __init__(self, path: str | Path, suffix: str = "", replace_folder: bool = False):
        self.path = Path(path)
        self.tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp{suffix}")
        self.replace_folder = replace_folder
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise _cannot_write(self.path, e) from None

    def commit(self) -> Path:
        """Move ``tmp`` onto ``path``; returns ``path``."""
        try:
            if self.replace_folder and self.path.is_dir() and self.tmp.is_dir():
                shutil.rmtree(self.path)
            os.replace(self.tmp, self.path)
        except OSError as e:
            raise _cannot_write(self.path, e) from None
        finally:
            self.discard()
        return self.path

    def discard(self) -> None:
        """Remove ``tmp`` (nothing when it was moved into place or never made)."""
        if self.tmp.is_dir():
            shutil.rmtree(self.tmp, ignore_errors=True)
        else:
            with suppress(OSError):
                self.tmp.unlink(missing_ok=True)


def _cannot_write(path: Path, error: OSError) -> YoloError:
    return YoloError(f"{path}: cannot write ({error.strerror or error})")


@contextmanager
def atomic_path(path: str | Path, suffix: str = "", replace_folder: bool = False) -> Iterator[Path]:
    """Yield :class:`AtomicTarget`'s temporary path beside ``path``; on normal exit it replaces
    ``path``, on failure it is removed. An :class:`OSError` in the body (writing) becomes
    :class:`YoloError` ``<path>: cannot write (<reason>)`` too."""
    target = AtomicTarget(path, suffix, replace_folder)
    try:
        yield target.tmp
        target.commit()
    except OSError as e:
        raise _cannot_write(target.path, e) from None
    finally:
        target.discard()


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
