"""The in-memory dataset every reader produces and every consumer takes."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


@dataclass
class Sample:
    """One labelled image: ``boxes (N, 4)`` float32 xyxy pixels, ``classes (N,)`` int32.

    image_id: the image's id in the dataset's own files (a COCO ``images[].id``, which results
    files refer to), None where the format has none.
    """

    image: Path
    boxes: np.ndarray
    classes: np.ndarray
    width: int
    height: int
    image_id: int | str | None = None


@dataclass
class Problems:
    """Per-sample problems found while reading: each is skipped or repaired, and counted.

    ``items`` holds ``(file, kind, message)``; ``kind`` is a short slug (``degenerate-box``,
    ``clipped-box``, ``unknown-class``, ``corrupt-image``, ``oversized-image``,
    ``malformed-label``, ``duplicate-id``, …).
    """

    items: list[tuple[str, str, str]] = field(default_factory=list)

    def add(self, file: str | Path, kind: str, message: str) -> None:
        self.items.append((str(file), kind, message))
        log.info("%s: %s", file, message)

    def lines(self) -> list[str]:
        """One ``<file>: <problem>`` line per problem, in the order found."""
        return [f"{file}: {message}" for file, _, message in self.items]

    def counts(self) -> Counter:
        return Counter(kind for _, kind, _ in self.items)

    def __len__(self) -> int:
        return len(self.items)

    def summary(self) -> str:
        """One line, e.g. ``3 problems: 2 degenerate-box, 1 unknown-class``."""
        if not self.items:
            return "no problems"
        parts = ", ".join(f"{n} {k}" for k, n in self.counts().most_common())
        return f"{len(self.items)} problems: {parts}"


@dataclass
class Dataset:
    """Class names + samples, read from ``root`` in ``format`` ``voc``, ``coco`` or ``yolo``
    (the synthetic scenes are written as YOLO txt).

    split: ``train``, ``val``, ``test``, or None for every image. own_splits: whether the
    dataset's files define its splits (split files or folders, split-named JSON, CSV lists);
    False when the splits are the seeded shares of :func:`~yolo_cli.data.records.split_samples`.
    category_ids: the dataset's own category id → class index (COCO's ``categories[].id``,
    which results files refer to), None where the format has none. dropped: images the labels
    name that are left out (missing, unreadable, over the pixel cap, a COCO id they share).
    """

    names: list[str]
    samples: list[Sample]
    format: str
    root: Path
    split: str | None = None
    problems: Problems = field(default_factory=Problems)
    own_splits: bool = False
    category_ids: dict[int, int] | None = None
    dropped: int = 0

    def __len__(self) -> int:
        return len(self.samples)

    def num_objects(self) -> int:
        return sum(len(s.classes) for s in self.samples)

    def objects_per_class(self) -> dict[str, int]:
        counts = Counter(int(c) for s in self.samples for c in s.classes)
        return {name: counts.get(i, 0) for i, name in enumerate(self.names)}
