"""Loading a dataset: detect its format, read it, choose a split, check images and boxes.

Three formats are read: Pascal VOC (:mod:`~yolo_cli.data.voc`), COCO instances JSON
(:mod:`~yolo_cli.data.coco`) and YOLO txt (:mod:`~yolo_cli.data.yolo_txt`). The reader turns the
files into :class:`~yolo_cli.data.records.Annotation` records by split (a :class:`Source`); this
module chooses the split, checks each image's header (or decodes it), turns boxes into pixels,
drops or clips bad boxes, and reports every such problem once, with its file, in
:class:`~yolo_cli.data.dataset.Problems`.

Splits come from the dataset's own split files where it has them (VOC ``ImageSets/Main`` or
CSV lists such as raccoon's ``data/train_labels.csv``, COCO ``instances_<split>.json``, YOLO
``data.yaml`` or ``images/<split>/``), otherwise from
:func:`~yolo_cli.data.records.split_samples`. ``all`` (or None) is every image.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from yolo_cli.config import SPLIT_ALL, SPLITS
from yolo_cli.data import coco, voc, yolo_txt
from yolo_cli.data.dataset import Dataset, Problems, Sample
from yolo_cli.data.image import OversizedImage, header_size, image_size
from yolo_cli.data.records import Annotation, Parts, check_split, split_samples
from yolo_cli.errors import YoloError

# Detection order matters: a YOLO folder may also hold XML or JSON, a VOC one may hold JSON.
READERS = {"yolo": yolo_txt, "voc": voc, "coco": coco}

# Boxes overshooting the image by less than this (px) are rounding in the label file, not errors.
_CLIP_TOLERANCE = 0.01


def split_arg(split: str | None) -> str | None:
    """A split as the user gave it → ``train``, ``val``, ``test``, or None for every image
    (``all`` or None); :class:`YoloError` for anything else."""
    return None if split in (None, SPLIT_ALL) else check_split(split)


def detect_format(path: str | Path) -> tuple[str, Path]:
    """``(format, root)`` of the dataset at ``path``; root is what that format's reader reads.

    A folder holding exactly one dataset (``bccd/`` holding ``BCCD/``, or two levels down as in
    ``VOCdevkit/VOC2007``) is accepted too. Raises :class:`YoloError` if the path is missing,
    holds no recognisable dataset, or holds several.
    """
    path = Path(path)
    if not path.exists():
        raise YoloError(f"{path}: no such file or directory")
    if path.is_dir() and not any(path.iterdir()):
        raise YoloError(f"{path}: empty folder, no dataset in it")
    level = [path]
    for _ in range(3):
        found = [(fmt, root) for p in level for fmt, m in READERS.items() if (root := m.find(p))]
        found = list({root: (fmt, root) for fmt, root in found}.values())
        if len(found) == 1 or (found and level == [path]):
            return found[0]
        if len(found) > 1:
            listed = ", ".join(f"{root} ({fmt})" for fmt, root in found)
            raise YoloError(f"{path}: holds several datasets, pass one of: {listed}")
        level = [c for p in level if p.is_dir() for c in sorted(p.iterdir()) if c.is_dir()]
    raise YoloError(
        f"{path}: unknown dataset format (expected VOC Annotations/*.xml, "
        "COCO instances *.json, or YOLO txt labels/ or data.yaml)"
    )


@dataclass
class Source:
    """A dataset as its reader parsed it, before a split is chosen and images are checked.

    parts: annotations per split of the dataset's own (key None: in none of them).
    """

    path: Path
    format: str
    root: Path
    names: list[str]
    parts: Parts
    problems: Problems

    @property
    def own_splits(self) -> bool:
        return any(key is not None for key in self.parts)

    def splits(self) -> list[str]:
        """The splits that hold images: the dataset's own, or all three seeded shares."""
        if not self.own_splits:
            return list(SPLITS)
        return [s for s in SPLITS if self.parts.get(s)]

    def select(self, split: str | None) -> list[Annotation]:
        """The annotations of ``split`` (None: every image), in image path order."""
        if split is None:
            unique = {a.image: a for records in self.parts.values() for a in records}
            return sorted(unique.values(), key=lambda a: str(a.image))
        if self.own_splits:
            return sorted(self.parts.get(split, []), key=lambda a: str(a.image))
        return split_samples(self.parts.get(None, []), split)


def read_source(path: str | Path, names: list[str] | None = None) -> Source:
    """Detect the format of the dataset at ``path`` and parse its annotation files.

    names: the class list to map labels onto (labels of other classes are reported and
    dropped); default: the dataset's own. Raises :class:`YoloError` when nothing is found.
    """
    fmt, root = detect_format(path)
    problems = Problems()
    found_names, parts = READERS[fmt].read(root, names, problems)
    if not any(parts.values()):
        raise YoloError(f"{path}: no images found ({fmt} dataset at {root})")
    return Source(Path(path), fmt, root, found_names, parts, problems)


def _image_sizes(images: list[Path], decode: bool) -> dict[Path, tuple[int, int] | YoloError]:
    """``(width, height)``, or the error that stops it being read, of each image: from the
    header, or by decoding the whole file when ``decode``."""

    def one(path: Path) -> tuple[int, int] | YoloError:
        try:
            return image_size(path) if decode else header_size(path)
        except YoloError as e:
            return e

    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        return dict(zip(images, pool.map(one, images), strict=True))


def _fmt_box(box: np.ndarray) -> str:
    return "[" + ", ".join(f"{v:.6g}" for v in box) + "]"


def check_boxes(
    boxes: np.ndarray,
    classes: np.ndarray,
    width: int,
    height: int,
    names: list[str],
    report: Callable[[str, str], None],
) -> tuple[np.ndarray, np.ndarray]:
    """Drop boxes that are not finite, degenerate or wholly outside the image; clip the rest.

    boxes: ``(N, 4)`` xyxy pixels of a ``width × height`` image; classes: ``(N,)``. Each dropped
    or clipped box is passed to ``report(kind, message)`` (kinds ``malformed-label``,
    ``degenerate-box``, ``outside-box``, ``clipped-box``); overshoot under 0.01 px is clipped
    silently, being rounding in the label file. Returns the kept ``(boxes, classes)``.
    """
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    classes = np.asarray(classes, np.int32).reshape(-1)
    finite = np.isfinite(boxes).all(axis=1)
    b = np.where(finite[:, None], boxes, 0)
    degenerate = finite & ((b[:, 2] <= b[:, 0]) | (b[:, 3] <= b[:, 1]))
    outside = (b[:, 2] <= 0) | (b[:, 3] <= 0) | (b[:, 0] >= width) | (b[:, 1] >= height)
    outside &= finite & ~degenerate
    keep = finite & ~degenerate & ~outside
    overshoot = np.stack([-b[:, 0], -b[:, 1], b[:, 2] - width, b[:, 3] - height], axis=1)
    clipped = keep & (overshoot.max(axis=1) > _CLIP_TOLERANCE)
    for i in np.flatnonzero(~keep | clipped):
        what = f"box {_fmt_box(boxes[i])} ({names[classes[i]]})"
        if not finite[i]:
            report("malformed-label", f"{what} has a non-finite coordinate; dropped")
        elif degenerate[i]:
            report("degenerate-box", f"{what} has zero or negative width or height; dropped")
        elif outside[i]:
            report("outside-box", f"{what} lies outside the {width}x{height} image; dropped")
        else:
            report("clipped-box", f"{what} crosses the {width}x{height} image edge; clipped")
    kept = boxes[keep]
    kept[:, [0, 2]] = np.clip(kept[:, [0, 2]], 0, width)
    kept[:, [1, 3]] = np.clip(kept[:, [1, 3]], 0, height)
    return kept, classes[keep]


def _samples(
    records: list[Annotation], names: list[str], problems: Problems, verify: bool
) -> list[Sample]:
    """Annotations → samples: images checked, boxes in pixels and checked, problems reported."""
    from yolo_cli.boxes import denormalize

    sizes = _image_sizes([a.image for a in records if a.usable], decode=verify)
    samples = []
    for a in records:
        for kind, message in a.problems:
            problems.add(a.source, kind, message)
        if not a.usable:
            continue
        size = sizes[a.image]
        if isinstance(size, YoloError):
            kind = "oversized-image" if isinstance(size, OversizedImage) else "corrupt-image"
            problems.add(a.image, kind, f"{str(size).removeprefix(f'{a.image}: ')}; sample dropped")
            continue
        if a.size is not None and tuple(a.size) != size:
            problems.add(
                a.source,
                "size-mismatch",
                f"says the image is {a.size[0]}x{a.size[1]} but {a.image.name} is "
                f"{size[0]}x{size[1]}; using the image's size",
            )
        width, height = size
        boxes = denormalize(a.boxes, width, height) if a.normalized else a.boxes
        # a label file of many images (COCO JSON, CSV) names the image a box belongs to
        image = "" if a.source.stem == a.image.stem else f"{a.image.name}: "
        boxes, classes = check_boxes(
            boxes,
            a.classes,
            width,
            height,
            names,
            lambda kind, msg, src=a.source, image=image: problems.add(src, kind, image + msg),
        )
        samples.append(Sample(a.image, boxes, classes, int(width), int(height), a.image_id))
    return samples


def _category_ids(records: list[Annotation]) -> dict[int, int] | None:
    """The category ids the records' label files share (an id that means different classes
    in different files is left out), or None when they have none."""
    merged: dict[int, int] = {}
    clashing: set[int] = set()
    for a in records:
        for cid, c in (a.category_ids or {}).items():
            if merged.setdefault(cid, c) != c:
                clashing.add(cid)
    return {cid: c for cid, c in merged.items() if cid not in clashing} or None


def build(source: Source, split: str | None, verify: bool = False) -> Dataset:
    """The :class:`Dataset` of ``split`` (None: every image) of ``source``; may hold no samples.

    Problems found on the way are added to ``source.problems``, which the dataset shares.
    """
    records = source.select(split)
    samples = _samples(records, source.names, source.problems, verify)
    return Dataset(
        source.names,
        samples,
        source.format,
        source.root,
        split,
        source.problems,
        source.own_splits,
        _category_ids(records),
        dropped=len(records) - len(samples),
    )


def load_dataset(
    path: str | Path,
    split: str | None = None,
    names: list[str] | None = None,
    verify: bool = False,
    whole_if_unsplit: bool = False,
) -> Dataset:
    """Read the VOC, COCO or YOLO txt dataset at ``path`` (format detected from the files).

    split: ``train``, ``val``, ``test``, or ``all``/None for every image. whole_if_unsplit:
    a dataset with no split of its own gives every image (``dataset.split`` None) instead of
    the seeded share of ``split``. names: the class list to map labels onto (labels of other
    classes are reported and dropped); default: the dataset's own. verify: decode every image
    (slower) rather than read its header; either way unreadable images and images over the
    pixel cap are dropped and the image's own size wins over the annotation's.

    Per-sample problems are reported and counted in ``dataset.problems``. Raises
    :class:`YoloError` for a missing path, an unknown format, an unreadable class list, or
    when no usable image is left.
    """
    split = split_arg(split)
    source = read_source(path, names)
    if whole_if_unsplit and not source.own_splits:
        split = None
    dataset = build(source, split, verify)
    if not dataset.samples:
        where = f" in the {split} split" if split else ""
        has = ""
        if split and source.own_splits and split not in source.splits():
            has = f"; its own splits are {', '.join(source.splits()) or 'empty'}, --split all reads every image"
        raise YoloError(f"{path}: no usable images{where} ({dataset.problems.summary()}{has})")
    return dataset
