"""Run folders: ``runs/<task>/exp``, ``exp2``, … as ultralytics users know them, or ``--out``."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from yolo_cli.errors import YoloError


def _first_free(path: Path, taken: Callable[[Path], bool]) -> Path:
    """``path``, else ``path2``, ``path3`` … : the first that is not ``taken``."""
    candidate, n = path, 1
    while taken(candidate):
        n += 1
        candidate = path.with_name(f"{path.name}{n}")
    return candidate


def next_run_dir(base: str | Path) -> Path:
    """``base/exp``, then ``base/exp2``, ``base/exp3`` … (the first that does not exist)."""
    return _first_free(Path(base) / "exp", Path.exists)


def fresh_out(out: str | Path) -> Path:
    """``out``, or ``out2``, ``out3`` … (the first that is not a folder yet) when ``out`` is a
    folder already, so that a second run into the same ``--out`` keeps the first run's results
    whole (ultralytics' increment). A file stays as it is, for :func:`run_folder` to refuse."""
    out = Path(out)
    path = out if out.name else out.absolute()  # "." has no name to number
    free = _first_free(path, Path.is_dir)
    return free if free != path else out


@contextmanager
def run_folder(out: str | Path | None, task: str, fresh: bool = False) -> Iterator[Path]:
    """The folder a command writes to, for the duration of the ``with`` block.

    out: the user's ``--out`` (made with its parents when absent; an existing folder is used
    as it is, or with ``fresh`` left alone for :func:`fresh_out`'s next name), or ``None`` for
    the next ``runs/<task>/expN`` (made here, so two commands started together never share
    one). Before anything is made, raises :class:`YoloError` (``<path>: <problem>``) when
    ``out`` is a file, lies under a file, or cannot be created or written (no permission, a
    read-only or virtual file system such as ``/proc``).

    On leaving the block, by success or failure, the folders made here that are still empty
    are removed: a command that failed early, or wrote nothing, leaves no trace.
    """
    if out is None:
        path, made = _make_next(Path("runs") / task)
    else:
        path = fresh_out(out) if fresh else Path(out)
        made = _make(path)
    try:
        yield path
    finally:
        _remove_empty(made)


def _make(path: Path) -> list[Path]:
    """Create ``path`` and its missing parents; returns the folders created, outermost first."""
    missing = []
    for p in [path, *path.parents]:
        try:
            if p.exists():
                if not p.is_dir():
                    where = "is a file" if p == path else f"lies under the file {p}"
                    raise YoloError(f"{path}: {where}; a run folder must be a folder")
                break
        except PermissionError as e:
            raise YoloError(f"{path}: cannot create the run folder ({e.strerror})") from None
        missing.append(p)
    missing.reverse()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        _remove_empty(missing)
        raise YoloError(f"{path}: cannot create the run folder ({e.strerror or e})") from None
    if not os.access(path, os.W_OK | os.X_OK):
        _remove_empty(missing)
        raise YoloError(f"{path}: the run folder is not writable")
    return missing


def _make_next(base: Path) -> tuple[Path, list[Path]]:
    """Create the next free ``base/expN`` (atomically: a folder another process made first is
    skipped); returns it and the folders created, outermost first."""
    made = _make(base)
    while True:
        path = next_run_dir(base)
        try:
            path.mkdir()
        except FileExistsError:
            continue
        except OSError as e:
            _remove_empty(made)
            raise YoloError(f"{path}: cannot create the run folder ({e.strerror or e})") from None
        return path, [*made, path]


def _remove_empty(folders: list[Path]) -> None:
    """Remove ``folders`` (outermost first) from the innermost out, stopping at one not empty."""
    for folder in reversed(folders):
        try:
            folder.rmdir()
        except OSError:
            return
