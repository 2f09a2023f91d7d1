"""What every dataset reader produces and the small helpers they share.

A reader (:mod:`~yolo_cli.data.voc`, :mod:`~yolo_cli.data.coco`, :mod:`~yolo_cli.data.yolo_txt`)
parses annotation files into :class:`Annotation` records grouped by split (:data:`Parts`);
:mod:`~yolo_cli.data.load` then chooses the split, checks the images and boxes, and builds the
:class:`~yolo_cli.data.dataset.Dataset`. Readers import this module and nothing above it.

Splits: a dataset's own split files say which image is in which split; a dataset with none is
cut by :func:`split_samples`; :func:`carve_val` makes a val split for split lists that have
train but no val (raccoon's CSV lists).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from yolo_cli.config import DEFAULTS, SPLITS
from yolo_cli.errors import YoloError

_SPLIT_WORDS = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "test": "test",
    "testing": "test",
}


def _empty_boxes() -> np.ndarray:
    return np.zeros((0, 4), np.float32)


def _empty_classes() -> np.ndarray:
    return np.zeros((0,), np.int32)


@dataclass
class Annotation:
    """One image's labels as a reader parsed them, before a split is chosen and boxes checked.

    boxes: ``(N, 4)`` float32 xyxy, in pixels, or in fractions of the image size when
    ``normalized`` (YOLO txt, whose pixels need the image's size); classes: ``(N,)`` int32.
    size: ``(width, height)`` as the annotation states it, or None when only the image knows.
    source: the file that problems are reported against (the XML, JSON or txt).
    problems: ``(kind, message)`` pairs found while parsing; ``usable`` False drops the sample.
    image_id, category_ids: the ids the label file gives the image and its categories
    (category id → class index), where the format has them (COCO).
    """

    image: Path
    source: Path
    boxes: np.ndarray = field(default_factory=_empty_boxes)
    classes: np.ndarray = field(default_factory=_empty_classes)
    size: tuple[int, int] | None = None
    normalized: bool = False
    problems: list[tuple[str, str]] = field(default_factory=list)
    usable: bool = True
    image_id: int | str | None = None
    category_ids: dict[int, int] | None = None

    def problem(self, kind: str, message: str, fatal: bool = False) -> None:
        self.problems.append((kind, message))
        if fatal:
            self.usable = False


# A reader's result, per split (None: in no split of the dataset's own), the annotations.
Parts = dict[str | None, list[Annotation]]


def check_split(split: str) -> str:
    """``split`` if it is train, val or test; else :class:`YoloError` naming the choices."""
    if split not in SPLITS:
        raise YoloError(f"unknown split {split!r} (choose from {', '.join(SPLITS)} or all)")
    return split


def split_from_name(name: str) -> str | None:
    """The split a file or folder name says, e.g. ``instances_val2017`` → ``val``, else None.

    Words are runs of letters: ``valid``/``validation`` mean ``val``; ``trainval`` is none.
    """
    words = {_SPLIT_WORDS[w] for w in re.split(r"[^a-z]+", name.lower()) if w in _SPLIT_WORDS}
    return words.pop() if len(words) == 1 else None


def _by_image(samples: Sequence) -> list:
    return sorted(samples, key=lambda s: str(s.image))


def _shuffled(samples: Sequence, seed: int) -> list:
    """``samples`` sorted by image path, then permuted by a NumPy generator seeded with
    ``seed``: the same order whatever order the files were listed in."""
    ordered = _by_image(samples)
    return [ordered[i] for i in np.random.default_rng(seed).permutation(len(ordered))]


def split_samples(
    samples: Sequence,
    split: str,
    seed: int = DEFAULTS.seed,
    fractions: tuple[float, float, float] = DEFAULTS.split_fractions,
) -> list:
    """The ``split`` (train, val or test) share of ``samples`` that have no split of their own.

    Deterministic: the samples are sorted by image path, shuffled by a NumPy generator seeded
    with ``seed``, and cut into ``round(n·train)``, ``round(n·val)`` and the rest, so the three
    splits are disjoint, cover every sample and do not depend on the order the files were
    listed in. Returned in image path order. Works on anything with an ``image`` path.
    """
    check_split(split)
    shuffled = _shuffled(samples, seed)
    n_train = round(len(shuffled) * fractions[0])
    n_val = round(len(shuffled) * fractions[1])
    bounds = {"train": (0, n_train), "val": (n_train, n_train + n_val)}
    lo, hi = bounds.get(split, (n_train + n_val, len(shuffled)))
    return _by_image(shuffled[lo:hi])


def carve_val(
    parts: Parts, seed: int = DEFAULTS.seed, fraction: float = DEFAULTS.val_from_train
) -> Parts:
    """``parts`` with a val split carved from train when they have train but no val.

    val gets ``round(fraction · n_train)`` of the train images (at least one when train has
    two or more), chosen as :func:`split_samples` chooses: sorted by image path, shuffled with
    ``seed``; train keeps the rest. Other parts are returned unchanged.
    """
    train = parts.get("train")
    if not train or parts.get("val"):
        return parts
    shuffled = _shuffled(train, seed)
    n_val = min(max(round(len(shuffled) * fraction), 1), len(shuffled) - 1)
    return {**parts, "train": _by_image(shuffled[n_val:]), "val": _by_image(shuffled[:n_val])}


def read_class_list(path: str | Path) -> list[str]:
    """Class names from a text file, one a line, class id = line number − 1 (``classes.txt``,
    Darknet's ``.names``); blank lines at the end are ignored. Raises :class:`YoloError` for a
    missing or unreadable file, an empty list, a blank line among the names (it would shift
    every id after it) and a name listed twice."""
    path = Path(path)
    if not path.is_file():
        raise YoloError(f"{path}: class list not found")
    try:
        lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    except (OSError, UnicodeDecodeError) as e:
        raise YoloError(f"{path}: unreadable class list ({e})") from None
    while lines and not lines[-1]:
        lines.pop()
    if not lines:
        raise YoloError(f"{path}: class list is empty")
    for number, name in enumerate(lines, 1):
        if not name:
            raise YoloError(f"{path}:{number}: empty class name")
        if name in lines[: number - 1]:
            raise YoloError(f"{path}:{number}: class name {name!r} repeats")
    return lines


def child_dir(folder: Path, name: str) -> Path | None:
    """The sub-folder of ``folder`` called ``name``, ignoring case, or None."""
    exact = folder / name
    if exact.is_dir():
        return exact
    try:
        return next(
            (p for p in folder.iterdir() if p.name.lower() == name.lower() and p.is_dir()), None
        )
    except OSError:
        return None


def link_or_copy(src: Path, dst: Path) -> None:
    """Hard-link ``src`` at ``dst`` (no copy, same bytes), copying where links cannot be made."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
