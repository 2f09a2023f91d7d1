"""Pascal VOC datasets: ``Annotations/*.xml`` + ``JPEGImages/`` + ``ImageSets/Main/<split>.txt``.

Also read: the flat layout ``annotations/*.xml`` + ``images/`` (e.g. the raccoon dataset), and
XML files beside their images (labelImg's default). VOC boxes are 1-based pixel corners: a box
``xmin..xmax`` covers pixels ``xmin`` to ``xmax`` inclusive, so it becomes the 0-based xyxy box
``(xmin - 1, ymin - 1, xmax, ymax)``, and the writer inverts that exactly, rounding to the
integer pixels VOC stores. Objects marked ``difficult`` are kept (the flag is not carried).

Splits: ``ImageSets/Main/<split>.txt`` lists, else CSV files whose name says a split
(``<split>_labels.csv`` in the root or its ``data/``, as the TensorFlow Object Detection API's
``xml_to_csv.py`` writes them: a ``filename`` column, one row per object) naming each split's
images; the boxes always come from the XML. A dataset whose lists give train but no val (the
raccoon dataset: 160 train, 40 test) gets a val split carved from train by
:func:`~yolo_cli.data.records.carve_val` (10 %, seeded).
"""

from __future__ import annotations

import csv
import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from yolo_cli.config import IMAGE_EXTENSIONS, SPLITS
from yolo_cli.data.dataset import Problems, Sample
from yolo_cli.data.records import (
    Annotation,
    Parts,
    carve_val,
    child_dir,
    link_or_copy,
    read_class_list,
    split_from_name,
)

_CORNERS = ("xmin", "ymin", "xmax", "ymax")


def _annotation_dir(root: Path) -> Path | None:
    folder = child_dir(root, "Annotations")
    if folder is not None and any(folder.glob("*.xml")):
        return folder
    if any(root.glob("*.xml")) and any(_images_in(root)):
        return root
    return None


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)


def find(path: Path) -> Path | None:
    """``path`` if it is a VOC root (a folder with an annotations folder of XML), else None."""
    return path if path.is_dir() and _annotation_dir(path) is not None else None


@dataclass
class _Object:
    name: str
    corners: tuple[float, float, float, float]  # xmin, ymin, xmax, ymax as in the file


@dataclass
class _Parsed:
    filename: str | None = None
    size: tuple[int, int] | None = None
    objects: list[_Object] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)
    error: str | None = None


_MAX_SIDE = 1 << 31  # a stated image side above this is no real image's


def _side(text: str | None) -> int | None:
    """A stated image side: a positive whole number (``640``, ``640.0``), else None."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return (
        int(value)
        if math.isfinite(value) and value.is_integer() and 0 < value <= _MAX_SIDE
        else None
    )


def _stated_size(root: ET.Element) -> tuple[tuple[int, int] | None, str | None]:
    """``(width, height)`` from ``<size>``, or None and, when it is not merely absent or zero
    (labelImg writes 0 for unknown), the problem with it."""
    texts = [root.findtext(f"size/{k}") for k in ("width", "height")]
    sides = [_side(t) for t in texts]
    if sides[0] and sides[1]:
        return (sides[0], sides[1]), None
    if all(t is None or t.strip() in ("", "0") for t in texts):
        return None, None
    return (
        None,
        f"size {texts[0]!r} x {texts[1]!r} is not two positive whole numbers; using the image's size",
    )


def parse_annotation(path: Path) -> _Parsed:
    """One VOC XML file → file name, stated size, objects (corners as written), problems."""
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as e:
        return _Parsed(error=f"malformed XML ({e}); sample dropped")
    out = _Parsed(filename=(root.findtext("filename") or "").strip() or None)
    out.size, size_problem = _stated_size(root)
    if size_problem:
        out.problems.append(("malformed-label", size_problem))
    for i, obj in enumerate(root.findall("object")):
        name = (obj.findtext("name") or "").strip()
        element = obj.find("bndbox")
        bndbox = {c.tag: c.text for c in element} if element is not None else {}
        try:
            corners = tuple(float(bndbox[k]) for k in _CORNERS)
        except (KeyError, TypeError, ValueError):
            out.problems.append(
                ("malformed-label", f"object {i} ({name or 'no name'}) has no valid bndbox")
            )
            continue
        if not all(math.isfinite(c) for c in corners):
            shown = " ".join(f"{k} {bndbox[k].strip()}" for k in _CORNERS)
            out.problems.append(
                (
                    "malformed-label",
                    f"object {i} ({name or 'no name'}) bndbox {shown} is not finite; dropped",
                )
            )
            continue
        if not name:
            out.problems.append(("malformed-label", f"object {i} has no name"))
            continue
        out.objects.append(_Object(name, corners))
    return out


def _class_names(root: Path, ann_dir: Path, parsed: list[_Parsed]) -> list[str]:
    for folder in (ann_dir, root):
        if (folder / "classes.txt").is_file():
            return read_class_list(folder / "classes.txt")
    return sorted({o.name for p in parsed for o in p.objects})


def _annotation(
    xml: Path, parsed: _Parsed, image: Path | None, image_dir: Path, index: dict[str, int]
) -> Annotation:
    expected = image or image_dir / (parsed.filename or f"{xml.stem}.jpg")
    a = Annotation(expected, xml, size=parsed.size, problems=list(parsed.problems))
    if parsed.error:
        a.problem("malformed-label", parsed.error, fatal=True)
        return a
    if image is None:
        message = f"no image {xml.stem}.* in {image_dir}; sample dropped"
        a.problem("missing-image", message, fatal=True)
        return a
    boxes, classes = [], []
    for o in parsed.objects:
        xmin, ymin, xmax, ymax = o.corners
        if o.name not in index:
            a.problem("unknown-class", f"object class {o.name!r} is not in the class list; dropped")
        elif xmax <= xmin or ymax <= ymin:
            # Tested on the corners as written: xmax == xmin is a point annotation, not the
            # one-pixel-wide box the 1-based convention would make of it.
            a.problem(
                "degenerate-box",
                f"{o.name} box xmin {xmin:g} ymin {ymin:g} xmax {xmax:g} ymax {ymax:g} "
                "has zero or negative width or height; dropped",
            )
        else:
            boxes.append((xmin - 1, ymin - 1, xmax, ymax))
            classes.append(index[o.name])
    a.boxes = np.array(boxes, np.float32).reshape(-1, 4)
    a.classes = np.array(classes, np.int32)
    return a


def read(root: Path, names: list[str] | None, problems: Problems) -> tuple[list[str], Parts]:
    """Read the VOC dataset at ``root`` → class names and annotations by split.

    Class names: ``names`` if given, else ``classes.txt`` beside the XML files or in the root,
    else the sorted names found. The image of ``X.xml`` is ``X.<ext>`` in ``JPEGImages/`` (or
    ``images/``, or beside the XML), else the file the XML's ``<filename>`` names.
    """
    ann_dir = _annotation_dir(root)
    image_dir = child_dir(root, "JPEGImages") or child_dir(root, "images") or root
    images = _images_in(image_dir)
    by_stem = {p.stem: p for p in images}
    by_name = {p.name: p for p in images}
    xmls = sorted(ann_dir.glob("*.xml"))
    parsed = [parse_annotation(x) for x in xmls]
    names = names or _class_names(root, ann_dir, parsed)
    index = {n: i for i, n in enumerate(names)}
    records = {}
    for xml, p in zip(xmls, parsed, strict=True):
        image = by_stem.get(xml.stem) or by_name.get(p.filename or "")
        records[xml.stem] = _annotation(xml, p, image, image_dir, index)
    return names, _by_split(root, records, problems)


def _image_sets(root: Path, records: dict[str, Annotation], problems: Problems) -> Parts:
    """``ImageSets/Main/<split>.txt`` lists (one annotation id per line) → records by split."""
    sets = root / "ImageSets" / "Main"
    parts: Parts = {}
    for split in SPLITS:
        path = sets / f"{split}.txt"
        if not path.is_file():
            continue
        parts[split] = []
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if not line.split():
                continue
            image_id = line.split()[0]
            if image_id in records:
                parts[split].append(records[image_id])
            else:
                problems.add(path, "missing-label", f"line {n}: no annotation {image_id}.xml")
    return parts


def _split_csvs(root: Path) -> dict[str, Path]:
    """CSV files in ``root`` or ``root/data`` whose name says a split, by split."""
    folders = [root] + [d for d in [child_dir(root, "data")] if d is not None]
    found = {}
    for f in sorted(p for d in folders for p in d.glob("*.csv")):
        split = split_from_name(f.stem)
        if split is not None:
            found.setdefault(split, f)
    return found


def _csv_lists(root: Path, records: dict[str, Annotation], problems: Problems) -> Parts:
    """Split CSVs (a ``filename`` column naming each row's image) → records by split, with
    a val split carved from train when no CSV gives one."""
    by_name = {a.image.name: a for a in records.values()}
    parts: Parts = {}
    for split, path in _split_csvs(root).items():
        try:
            with path.open(newline="", encoding="utf-8") as f:
                reader = csv.DictReader(f)
                rows = list(reader)
        except (OSError, UnicodeDecodeError, csv.Error) as e:
            problems.add(path, "malformed-label", f"unreadable CSV ({e}); split list ignored")
            continue
        if "filename" not in (reader.fieldnames or []):
            problems.add(path, "malformed-label", "no filename column; split list ignored")
            continue
        chosen: dict[str, Annotation] = {}
        missing: set[str] = set()
        for n, row in enumerate(rows, 2):
            name = (row["filename"] or "").strip()
            if name in by_name:
                chosen.setdefault(name, by_name[name])
            elif name not in missing:
                missing.add(name)
                problems.add(path, "missing-label", f"line {n}: no annotation for image {name!r}")
        parts[split] = list(chosen.values())
    return carve_val(parts)


def _by_split(root: Path, records: dict[str, Annotation], problems: Problems) -> Parts:
    """Group by the ``ImageSets/Main`` lists, else by split CSVs; records in no list go under
    None."""
    parts = _image_sets(root, records, problems) or _csv_lists(root, records, problems)
    listed = {id(a) for records_of in parts.values() for a in records_of}
    rest = [a for a in records.values() if id(a) not in listed]
    if rest:
        parts[None] = rest
    return parts


def _xml(sample: Sample, filename: str, names: list[str]) -> str:
    root = ET.Element("annotation")
    ET.SubElement(root, "folder").text = "JPEGImages"
    ET.SubElement(root, "filename").text = filename
    size = ET.SubElement(root, "size")
    for key, value in (("width", sample.width), ("height", sample.height), ("depth", 3)):
        ET.SubElement(size, key).text = str(value)
    ET.SubElement(root, "segmented").text = "0"
    for box, c in zip(sample.boxes, sample.classes, strict=True):
        obj = ET.SubElement(root, "object")
        ET.SubElement(obj, "name").text = names[int(c)]
        ET.SubElement(obj, "pose").text = "Unspecified"
        ET.SubElement(obj, "truncated").text = "0"
        ET.SubElement(obj, "difficult").text = "0"
        bndbox = ET.SubElement(obj, "bndbox")
        x1, y1, x2, y2 = (float(v) for v in box)
        for key, value in zip(_CORNERS, (x1 + 1, y1 + 1, x2, y2), strict=True):
            ET.SubElement(bndbox, key).text = str(round(value))
    ET.indent(root, space="\t")
    return ET.tostring(root, encoding="unicode") + "\n"


def write(
    out: Path, names: list[str], parts: dict[str, list[Sample]], ids: dict[Path, str]
) -> None:
    """Write ``out/Annotations/<id>.xml``, ``out/JPEGImages/<id>.<ext>`` (hard-linked),
    ``out/ImageSets/Main/<split>.txt`` and ``out/classes.txt`` (keeps the class order)."""
    sets = out / "ImageSets" / "Main"
    sets.mkdir(parents=True, exist_ok=True)
    (out / "Annotations").mkdir(exist_ok=True)
    for split, samples in parts.items():
        for s in samples:
            image = out / "JPEGImages" / f"{ids[s.image]}{s.image.suffix}"
            if not image.exists():
                link_or_copy(s.image, image)
            xml = out / "Annotations" / f"{ids[s.image]}.xml"
            xml.write_text(_xml(s, image.name, names), encoding="utf-8")
        (sets / f"{split}.txt").write_text("".join(f"{ids[s.image]}\n" for s in samples))
    (out / "classes.txt").write_text("".join(f"{n}\n" for n in names), encoding="utf-8")
