"""COCO instances JSON: ``images``, ``annotations`` (``bbox`` = xywh pixels), ``categories``.

Found as a ``.json`` file, or a folder with ``annotations/*.json``, ``*.json``, or split folders
each holding one (Roboflow's ``train/_annotations.coco.json``). A file's split is the one its
name (``instances_val2017.json``) or folder says. Files named ``instances*`` are preferred
over other JSON (captions, keypoints). Crowd annotations (``iscrowd: 1``) are skipped: they
mark regions of many objects, not one object.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from yolo_cli.data.dataset import Problems, Sample
from yolo_cli.data.records import Annotation, Parts, link_or_copy, split_from_name


def _json_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path] if path.suffix.lower() == ".json" else []
    if not path.is_dir():
        return []
    folders = [path, path / "annotations"]
    folders += [c for c in sorted(path.iterdir()) if c.is_dir() and split_from_name(c.name)]
    files = sorted(f for d in folders if d.is_dir() for f in d.glob("*.json"))
    instances = [f for f in files if f.name.lower().startswith("instances")]
    return instances or files


def find(path: Path) -> Path | None:
    """``path`` if it is a COCO JSON file or a folder of them, else None."""
    return path if _json_files(path) else None


def _load(path: Path, problems: Problems) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        problems.add(path, "malformed-label", f"unreadable JSON ({e}); file skipped")
        return None
    if not (
        isinstance(data, dict)
        and isinstance(data.get("images"), list)
        and isinstance(data.get("annotations"), list)
    ):
        problems.add(path, "malformed-label", "not a COCO instances file; file skipped")
        return None
    return data


def _image_folders(path: Path, split: str | None) -> list[Path]:
    """Where a JSON's ``file_name`` may be relative to: its folder, the parent, their
    ``images/``, and folders in those named for the JSON's split (``val2017/``)."""
    bases = [path.parent, path.parent / "images", path.parent.parent, path.parent.parent / "images"]
    bases = [b for b in bases if b.is_dir()]
    named = [
        c for b in bases for c in sorted(b.iterdir()) if c.is_dir() and split_from_name(c.name)
    ]
    return bases + [c for c in named if split_from_name(c.name) == split]


def _categories(data: dict, path: Path, problems: Problems) -> dict[int, str]:
    listed = data.get("categories") or []
    if not isinstance(listed, list):
        problems.add(path, "malformed-label", f"categories {listed!r:.60} is not a list; ignored")
        listed = []
    cats = {}
    for c in listed:
        if isinstance(c, dict) and isinstance(c.get("id"), int) and c.get("name"):
            cats[c["id"]] = str(c["name"])
        else:
            problems.add(path, "malformed-label", f"category entry {c!r} skipped")
    return dict(sorted(cats.items()))


def _split_of(path: Path) -> str | None:
    return split_from_name(path.stem) or split_from_name(path.parent.name)


def read(root: Path, names: list[str] | None, problems: Problems) -> tuple[list[str], Parts]:
    """Read the COCO JSON file(s) at ``root`` → class names and annotations by split.

    Class names: ``names`` if given (categories of other names are reported and dropped),
    else the categories ordered by id (names new in later files appended).
    """
    loaded = [(f, d) for f in _json_files(root) if (d := _load(f, problems)) is not None]
    cats = {f: _categories(d, f, problems) for f, d in loaded}
    if names is None:
        names = list(dict.fromkeys(n for c in cats.values() for n in c.values()))
    index = {n: i for i, n in enumerate(names)}
    parts: Parts = defaultdict(list)
    for f, data in loaded:
        split = _split_of(f)
        cat_index = {cid: index.get(name) for cid, name in cats[f].items()}
        parts[split] += _image_records(f, data, cat_index, _image_folders(f, split), problems)
    return names, dict(parts)


def _image_entries(path: Path, data: dict, problems: Problems) -> dict[object, list[dict]]:
    """The well-formed ``images`` entries by id, in file order (several for a duplicated id)."""
    entries: dict[object, list[dict]] = defaultdict(list)
    for entry in data["images"]:
        image_id = entry.get("id") if isinstance(entry, dict) else None
        file_name = entry.get("file_name") if isinstance(entry, dict) else None
        if not (_is_key(image_id) and isinstance(file_name, str) and file_name):
            problems.add(path, "malformed-label", f"image entry {entry!r} lacks id or file_name")
            continue
        entries[image_id].append(entry)
    return entries


def _unique_entries(
    entries: dict[object, list[dict]],
) -> tuple[dict[object, dict], dict[object, tuple[str, str]]]:
    """One entry per image id, and the ids skipped, each with its message in two parts that
    the number of its annotations goes between.

    An id listed twice for the same file keeps one entry. An id shared by different files is
    ambiguous (which image do its boxes belong to?): every entry with it is skipped. A file
    listed under a second id keeps its first id; the later id is skipped.
    """
    kept: dict[object, dict] = {}
    skipped: dict[object, tuple[str, str]] = {}
    owner: dict[str, object] = {}
    for image_id, listed in entries.items():
        files = list(dict.fromkeys(e["file_name"] for e in listed))
        if len(files) > 1:
            skipped[image_id] = (
                f"image id {image_id!r} is shared by {', '.join(files)}: which image its ",
                " annotations belong to is unknown; those images skipped with them",
            )
        elif files[0] in owner:
            skipped[image_id] = (
                f"{files[0]} is listed again under image id {image_id!r} (first under "
                f"{owner[files[0]]!r}); that entry and its ",
                " annotations skipped",
            )
        else:
            owner[files[0]] = image_id
            kept[image_id] = listed[0]
    return kept, skipped


def _image_records(
    path: Path,
    data: dict,
    cat_index: dict[int, int | None],
    folders: list[Path],
    problems: Problems,
) -> list[Annotation]:
    """The annotations of one COCO file. Images with a duplicated id are reported
    (``duplicate-id``) and skipped with their annotations, never merged (see
    :func:`_unique_entries`)."""
    entries = _image_entries(path, data, problems)
    for image_id, listed in entries.items():
        if len(listed) > 1 and len({e["file_name"] for e in listed}) == 1:
            problems.add(
                path,
                "duplicate-id",
                f"image id {image_id!r} lists {listed[0]['file_name']} {len(listed)} times; "
                "one entry kept",
            )
    kept, skipped = _unique_entries(entries)
    category_ids = {cid: c for cid, c in cat_index.items() if c is not None}
    records: dict[object, Annotation] = {}
    for image_id, entry in kept.items():
        file_name = entry["file_name"]
        where = next((b / file_name for b in folders if (b / file_name).is_file()), None)
        width, height = entry.get("width"), entry.get("height")
        size = (width, height) if _is_count(width) and _is_count(height) else None
        if size is not None and min(size) <= 0:
            size = None
        elif size is None and (width, height) != (None, None):
            problems.add(
                path,
                "malformed-label",
                f"image {file_name}: width {width!r:.20}, height {height!r:.20} are not whole "
                "numbers; the image's own size is used",
            )
        a = Annotation(
            where or folders[0] / file_name,
            path,
            size=size,
            image_id=image_id,
            category_ids=category_ids,
        )
        if where is None:
            a.problem("missing-image", f"image {file_name} not found; sample dropped", fatal=True)
        records[image_id] = a
    boxes, classes = defaultdict(list), defaultdict(list)
    unplaced: dict[object, int] = dict.fromkeys(skipped, 0)
    for ann in data["annotations"]:
        if not isinstance(ann, dict):
            problems.add(
                path, "malformed-label", f"annotation {ann!r:.60} is not an object; skipped"
            )
            continue
        if ann.get("iscrowd"):
            continue
        image_id = ann.get("image_id")
        if _is_key(image_id) and image_id in unplaced:
            unplaced[image_id] += 1
            continue
        a = records.get(image_id) if _is_key(image_id) else None
        bbox = ann.get("bbox")
        if a is None:
            problems.add(
                path,
                "malformed-label",
                f"annotation {ann.get('id')}: unknown image_id {image_id!r}",
            )
            continue
        what = f"{a.image.name}: annotation {ann.get('id')}"
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(_is_number(v) for v in bbox)):
            a.problem("malformed-label", f"{what} has no valid bbox; dropped")
            continue
        category = ann.get("category_id")
        c = cat_index.get(category) if _is_key(category) else None
        if c is None:
            a.problem(
                "unknown-class", f"{what}: category {category!r} not in the class list; dropped"
            )
            continue
        x, y, w, h = (float(v) for v in bbox)
        boxes[image_id].append((x, y, x + w, y + h))
        classes[image_id].append(c)
    for image_id, (before, after) in skipped.items():
        problems.add(path, "duplicate-id", f"{before}{unplaced[image_id]}{after}")
    for image_id, a in records.items():
        a.boxes = np.array(boxes[image_id], np.float32).reshape(-1, 4)
        a.classes = np.array(classes[image_id], np.int32)
    return list(records.values())


def _is_key(v) -> bool:
    """An id COCO files use: an int or a string (anything else cannot be looked up)."""
    return isinstance(v, int | str) and not isinstance(v, bool)


def _is_count(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def instances(samples: list[Sample], names: list[str], ids: dict[Path, str]) -> dict:
    """A COCO instances dict for ``samples``; image ids count from 1, category ids are the
    class index + 1, ``file_name`` is ``<id>.<ext>``; bbox xywh pixels."""
    images, annotations = [], []
    for image_id, s in enumerate(samples, 1):
        images.append(
            {
                "id": image_id,
                "file_name": f"{ids[s.image]}{s.image.suffix}",
                "width": s.width,
                "height": s.height,
            }
        )
        for box, c in zip(s.boxes, s.classes, strict=True):
            x1, y1, x2, y2 = (round(float(v), 3) for v in box)
            w, h = round(x2 - x1, 3), round(y2 - y1, 3)
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": int(c) + 1,
                    "bbox": [x1, y1, w, h],
                    "area": round(w * h, 3),
                    "iscrowd": 0,
                    "segmentation": [],
                }
            )
    categories = [{"id": i + 1, "name": n, "supercategory": "none"} for i, n in enumerate(names)]
    return {"images": images, "annotations": annotations, "categories": categories}


def write(
    out: Path, names: list[str], parts: dict[str, list[Sample]], ids: dict[Path, str]
) -> None:
    """Write ``out/annotations/instances_<split>.json`` and ``out/images/<split>/<id>.<ext>``
    (hard-linked)."""
    (out / "annotations").mkdir(parents=True, exist_ok=True)
    for split, samples in parts.items():
        for s in samples:
            link_or_copy(s.image, out / "images" / split / f"{ids[s.image]}{s.image.suffix}")
        path = out / "annotations" / f"instances_{split}.json"
        path.write_text(json.dumps(instances(samples, names, ids)), encoding="utf-8")
