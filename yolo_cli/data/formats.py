"""Dataset formats: detect which one a path holds, load it, check it, convert it.

Three formats are read and written: Pascal VOC (:mod:`yolo_cli.data.voc`), COCO instances
JSON (:mod:`yolo_cli.data.coco`) and YOLO txt (:mod:`yolo_cli.data.yolo_txt`). Each reader
parses annotation files into :class:`Annotation` records grouped by split; this module
chooses the split, checks the images, turns boxes into pixels, drops or clips bad boxes and
reports every such problem once, with its file, in :class:`~yolo_cli.data.dataset.Problems`.

Splits come from the dataset's own split files where it has them (VOC ``ImageSets/Main``,
COCO ``instances_<split>.json``, YOLO ``data.yaml`` or ``images/<split>/``), otherwise from
:func:`split_samples`.
"""

from __future__ import annotations

import os
import re
import shutil
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from yolo_cli.config import DEFAULTS
from yolo_cli.data.dataset import Dataset, Problems, Sample
from yolo_cli.errors import YoloError

SPLITS = ("train", "val", "test")
FORMATS = ("voc", "coco", "yolo")
SPLIT_FRACTIONS = (0.8, 0.1, 0.1)

# Boxes overshooting the image by less than this (px) are rounding in the label file, not errors.
_CLIP_TOLERANCE = 0.01

_SPLIT_WORDS = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "test": "test",
    "testing": "test",
}

_EXIF_ORIENTATION = 0x0112


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
    """

    image: Path
    source: Path
    boxes: np.ndarray = field(default_factory=_empty_boxes)
    classes: np.ndarray = field(default_factory=_empty_classes)
    size: tuple[int, int] | None = None
    normalized: bool = False
    problems: list[tuple[str, str]] = field(default_factory=list)
    usable: bool = True

    def problem(self, kind: str, message: str, fatal: bool = False) -> None:
        self.problems.append((kind, message))
        if fatal:
            self.usable = False


# A reader's result: class names and, per split (None: in no split), the annotations.
Parts = dict[str | None, list[Annotation]]


def split_from_name(name: str) -> str | None:
    """The split a file or folder name says, e.g. ``instances_val2017`` → ``val``, else None.

    Words are runs of letters: ``valid``/``validation`` mean ``val``; ``trainval`` is none.
    """
    words = {_SPLIT_WORDS[w] for w in re.split(r"[^a-z]+", name.lower()) if w in _SPLIT_WORDS}
    return words.pop() if len(words) == 1 else None


def split_samples(
    samples: Sequence,
    split: str,
    seed: int = DEFAULTS.seed,
    fractions: tuple[float, float, float] = SPLIT_FRACTIONS,
) -> list:
    """The ``split`` (train, val or test) share of ``samples`` that have no split of their own.

    Deterministic: the samples are sorted by image path, shuffled by a NumPy generator seeded
    with ``seed``, and cut into ``round(n·train)``, ``round(n·val)`` and the rest, so the three
    splits are disjoint, cover every sample and do not depend on the order the files were
    listed in. Works on anything with an ``image`` path (samples or annotations).
    """
    if split not in SPLITS:
        raise YoloError(f"unknown split {split!r} (choose from {', '.join(SPLITS)})")
    ordered = sorted(samples, key=lambda s: str(s.image))
    order = np.random.default_rng(seed).permutation(len(ordered))
    n_train = round(len(ordered) * fractions[0])
    n_val = round(len(ordered) * fractions[1])
    bounds = {"train": (0, n_train), "val": (n_train, n_train + n_val)}
    lo, hi = bounds.get(split, (n_train + n_val, len(ordered)))
    return [ordered[i] for i in sorted(order[lo:hi])]


def read_class_list(path: Path) -> list[str]:
    """Class names from a text file, one per line (``classes.txt``); blank lines ignored."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise YoloError(f"{path}: unreadable class list ({e})") from None
    names = [line.strip() for line in lines if line.strip()]
    if not names:
        raise YoloError(f"{path}: class list is empty")
    if len(set(names)) != len(names):
        dup = next(n for n, k in Counter(names).items() if k > 1)
        raise YoloError(f"{path}: class {dup!r} is listed twice")
    return names


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


def _readers():
    from yolo_cli.data import coco, voc, yolo_txt

    # Order matters: a YOLO folder may also hold XML or JSON, a VOC one may hold JSON.
    return {"yolo": yolo_txt, "voc": voc, "coco": coco}


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
    readers = _readers()
    level = [path]
    for _ in range(3):
        found = [(fmt, root) for p in level for fmt, m in readers.items() if (root := m.find(p))]
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


def _select(parts: Parts, split: str | None) -> list[Annotation]:
    if split is not None and split not in SPLITS:
        raise YoloError(f"unknown split {split!r} (choose from {', '.join(SPLITS)})")
    if split is None:
        unique = {a.image: a for records in parts.values() for a in records}
        return sorted(unique.values(), key=lambda a: str(a.image))
    if any(key is not None for key in parts):
        return sorted(parts.get(split, []), key=lambda a: str(a.image))
    return split_samples(parts.get(None, []), split)


def header_size(path: Path) -> tuple[int, int]:
    """``(width, height)`` from an image file's header, as :func:`~yolo_cli.data.image.read_image`
    would return it (EXIF rotations by 90° swap the sides); decodes the file when the header
    cannot be read. Raises :class:`YoloError` for empty, corrupt or non-image files."""
    from PIL import Image

    from yolo_cli.data.image import image_size

    try:
        with Image.open(path) as im:
            width, height = im.size
            if im.getexif().get(_EXIF_ORIENTATION) in (5, 6, 7, 8):
                width, height = height, width
            return width, height
    except Exception:  # Pillow raises many types on bad input; decoding gives the verdict
        return image_size(path)


def _image_sizes(images: list[Path], decode: bool) -> dict[Path, tuple[int, int] | str]:
    """``(width, height)``, or the reason it cannot be read, of each image: from the header,
    or by decoding the whole file when ``decode``."""
    from yolo_cli.data.image import image_size

    def one(path: Path) -> tuple[int, int] | str:
        try:
            return image_size(path) if decode else header_size(path)
        except YoloError as e:
            return str(e).removeprefix(f"{path}: ")

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


def _finish(
    records: list[Annotation], names: list[str], problems: Problems, verify: bool
) -> list[Sample]:
    """Annotations → samples: images checked, boxes in pixels and checked, problems reported."""
    sizes = _image_sizes([a.image for a in records if a.usable], decode=verify)
    samples = []
    for a in records:
        for kind, message in a.problems:
            problems.add(a.source, kind, message)
        if not a.usable:
            continue
        size = sizes[a.image]
        if isinstance(size, str):
            problems.add(a.image, "corrupt-image", f"{size}; sample dropped")
            continue
        if a.size is not None and tuple(a.size) != size:
            problems.add(
                a.source,
                "size-mismatch",
                f"says the image is {a.size[0]}x{a.size[1]} but {a.image.name} is "
                f"{size[0]}x{size[1]}; using the image's size",
            )
        width, height = size
        boxes = a.boxes
        if a.normalized:
            from yolo_cli.boxes import denormalize

            boxes = denormalize(boxes, width, height)
        boxes, classes = check_boxes(
            boxes,
            a.classes,
            width,
            height,
            names,
            lambda kind, msg, src=a.source: problems.add(src, kind, msg),
        )
        samples.append(Sample(a.image, boxes, classes, int(width), int(height)))
    return samples


def _read(
    path: str | Path, names: list[str] | None
) -> tuple[str, Path, list[str], Parts, Problems]:
    fmt, root = detect_format(path)
    problems = Problems()
    found_names, parts = _readers()[fmt].read(root, names, problems)
    if not any(parts.values()):
        raise YoloError(f"{path}: no images found ({fmt} dataset at {root})")
    return fmt, root, found_names, parts, problems


def _build(path, split, names, verify) -> Dataset:
    fmt, root, names, parts, problems = _read(path, names)
    samples = _finish(_select(parts, split), names, problems, verify)
    return Dataset(names, samples, fmt, root, split, problems)


def load_dataset(
    path: str | Path,
    split: str | None = None,
    names: list[str] | None = None,
    verify: bool = False,
) -> Dataset:
    """Read the VOC, COCO or YOLO txt dataset at ``path`` (format detected from the files).

    split: ``train``, ``val``, ``test``, or None for every image. names: the class list to
    map labels onto (labels of other classes are reported and dropped); default: the
    dataset's own. verify: decode every image (slower) rather than read its header; either
    way unreadable images are dropped and the image's own size wins over the annotation's.

    Per-sample problems are reported and counted in ``dataset.problems``. Raises
    :class:`YoloError` for a missing path, an unknown format, an unreadable class list, or
    when no usable image is left.
    """
    dataset = _build(path, split, names, verify)
    if not dataset.samples:
        where = f" in the {split} split" if split else ""
        raise YoloError(f"{path}: no usable images{where} ({dataset.problems.summary()})")
    return dataset


def check_dataset(path: str | Path, split: str | None = None) -> Dataset:
    """Read the dataset at ``path`` decoding every image; may return no samples (all bad)."""
    return _build(path, split, None, verify=True)


def _histogram(values: np.ndarray, edges: Sequence[float], width: int = 30) -> list[str]:
    counts, _ = np.histogram(values, bins=[*edges, np.inf])
    top = max(int(counts.max()), 1)
    lines = []
    for lo, hi, n in zip(edges, [*edges[1:], None], counts, strict=True):
        label = f"{lo:g}-{hi:g}" if hi is not None else f">={lo:g}"
        lines.append(f"  {label:>9} {n:>7}  {'#' * round(width * n / top)}")
    return lines


def check_report(dataset: Dataset) -> str:
    """A plain-text report: format, split, images, objects per class, box sizes, problems."""
    lines = [
        f"dataset: {dataset.root} ({dataset.format})",
        f"split: {dataset.split or 'all'}",
        f"images: {len(dataset)}"
        f" ({sum(len(s.classes) == 0 for s in dataset.samples)} without objects)",
        f"objects: {dataset.num_objects()}",
        f"classes: {len(dataset.names)}",
    ]
    per_class = dataset.objects_per_class()
    width = max((len(n) for n in per_class), default=0)
    lines += [f"  {name:<{width}} {n:>7}" for name, n in per_class.items()]
    sizes = Counter((s.width, s.height) for s in dataset.samples)
    shown = ", ".join(f"{w}x{h} ({n})" for (w, h), n in sizes.most_common(3))
    more = f", {len(sizes) - 3} more" if len(sizes) > 3 else ""
    lines.append(f"image sizes: {shown}{more}" if sizes else "image sizes: -")
    boxes = np.concatenate([s.boxes for s in dataset.samples] or [np.zeros((0, 4))])
    if len(boxes):
        wh = boxes[:, 2:] - boxes[:, :2]
        for axis, label in ((0, "width"), (1, "height")):
            v = wh[:, axis]
            lines.append(
                f"box {label} px: min {v.min():.1f}  median {np.median(v):.1f}  max {v.max():.1f}"
            )
        lines.append("box sqrt(area) px:")
        lines += _histogram(np.sqrt(wh[:, 0] * wh[:, 1]), [0, 8, 16, 32, 64, 128, 256, 512])
    lines.append(f"problems: {dataset.problems.summary()}")
    lines += [f"  {file}: {kind}: {message}" for file, kind, message in dataset.problems.items]
    return "\n".join(lines)


def link_or_copy(src: Path, dst: Path) -> None:
    """Hard-link ``src`` at ``dst`` (no copy, same bytes), copying where links cannot be made."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def unique_ids(images: Sequence[Path]) -> dict[Path, str]:
    """A file stem per image path, unique among them: a stem that several images share gets
    its folder's name prefixed (``train_0001``), then a counter if still taken."""
    counts = Counter(p.stem for p in set(images))
    ids: dict[Path, str] = {}
    used: set[str] = set()
    for p in images:
        if p in ids:
            continue
        base = p.stem if counts[p.stem] == 1 else f"{p.parent.name}_{p.stem}"
        name, k = base, 1
        while name in used:
            k += 1
            name = f"{base}_{k}"
        used.add(name)
        ids[p] = name
    return ids


def _check_destination(dst: Path, sources: list[Path]) -> None:
    """Refuse a ``dst`` inside any source folder, or one that already holds files (which
    also covers a ``dst`` above the sources)."""
    d = dst.resolve()
    for src in sources:
        s = src.resolve()
        if d == s or s in d.parents:
            raise YoloError(f"{dst}: inside the source dataset {src}; pick another folder")
    if dst.exists() and (not dst.is_dir() or any(dst.iterdir())):
        raise YoloError(f"{dst}: already exists and is not an empty folder")


def convert_dataset(
    src: str | Path,
    dst: str | Path,
    to: str,
    split: str | None = None,
) -> dict[str, Dataset]:
    """Write the dataset at ``src`` into the empty or new folder ``dst`` in format ``to``.

    Writes ``split``, or every split (train, val, test: the dataset's own, else those of
    :func:`split_samples`) when None; images are hard-linked (copied across file systems),
    never written into ``src``. Bad samples are skipped and reported as when loading.
    Returns the datasets written, by split; they share one :class:`Problems`.
    """
    if to not in FORMATS:
        raise YoloError(f"unknown format {to!r} (choose from {', '.join(FORMATS)})")
    dst = Path(dst)
    fmt, root, names, parts, problems = _read(src, None)
    folders = {a.image.parent for records in parts.values() for a in records}
    given = Path(src) if Path(src).is_dir() else Path(src).parent
    _check_destination(dst, [given, root if root.is_dir() else root.parent, *sorted(folders)])
    written = {}
    for s in [split] if split else SPLITS:
        samples = _finish(_select(parts, s), names, problems, verify=False)
        if samples:
            written[s] = Dataset(names, samples, fmt, root, s, problems)
    if not written:
        raise YoloError(f"{src}: no usable images to convert ({problems.summary()})")
    samples = {s: d.samples for s, d in written.items()}
    ids = unique_ids([x.image for part in samples.values() for x in part])
    _readers()[to].write(dst, names, samples, ids)
    return written
