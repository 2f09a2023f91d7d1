"""YOLO txt datasets (ultralytics layout): ``images/<split>/X.jpg`` + ``labels/<split>/X.txt``.

A label file holds one object per line, ``class cx cy w h``, the box normalized to the image
size (fractions in [0, 1]); prediction files add a trailing confidence column. Class names
come from an ultralytics ``data.yaml`` (``names`` as a list or an ``{id: name}`` map; ``train``,
``val``, ``test`` give image folders or ``.txt`` lists of images) or a ``classes.txt``.
Without a ``data.yaml``, splits are the ``images/<split>/`` folders; darknet's layout, labels
beside their images, is read too. An image without a label file has no objects.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from yolo_cli.boxes import convert, normalize
from yolo_cli.config import IMAGE_EXTENSIONS, SPLITS
from yolo_cli.data.dataset import Problems, Sample
from yolo_cli.data.records import (
    Annotation,
    Parts,
    child_dir,
    link_or_copy,
    read_class_list,
    split_from_name,
)
from yolo_cli.errors import YoloError

_YAML_NAMES = ("data.yaml", "dataset.yaml")


def label_text(
    boxes: np.ndarray,
    classes: np.ndarray,
    width: int,
    height: int,
    scores: np.ndarray | None = None,
) -> str:
    """YOLO txt lines for one image: ``class cx cy w h [conf]``, six decimals, one per box.

    boxes: ``(N, 4)`` xyxy pixels of a ``width × height`` image; classes: ``(N,)`` int;
    scores: optional ``(N,)`` confidences, written as a trailing column. Returns ``""`` for N = 0,
    else the lines joined by newlines, with a final newline.
    """
    cxcywh = normalize(convert(boxes, "xyxy", "cxcywh"), width, height)
    classes = np.asarray(classes).reshape(-1)
    lines = []
    for i, (c, box) in enumerate(zip(classes, cxcywh, strict=True)):
        fields = [str(int(c))] + [f"{v:.6f}" for v in box]
        if scores is not None:
            fields.append(f"{float(scores[i]):.6f}")
        lines.append(" ".join(fields))
    return "".join(line + "\n" for line in lines)


def write_names(out_dir: str | Path, names: list[str], splits) -> Path:
    """Write an ultralytics-style ``out_dir/data.yaml``; returns its path.

    Each split in ``splits`` (a subset of train/val/test) points at ``images/<split>``, and
    ``names`` is the ``{id: name}`` map. There is no ``path`` key: ultralytics then takes the
    YAML's own folder as the root, which stays right when the folder is moved or renamed (an
    absolute path would not, and a relative one means a folder under ultralytics' datasets dir).
    """
    import yaml

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    content = {}
    for split in SPLITS:
        if split in set(splits):
            content[split] = f"images/{split}"
    content["nc"] = len(names)
    content["names"] = {i: str(name) for i, name in enumerate(names)}
    path = out_dir / "data.yaml"
    path.write_text(yaml.safe_dump(content, sort_keys=False, allow_unicode=True))
    return path


def label_path(image: Path) -> Path:
    """The label file of an image: its last ``images`` folder swapped for ``labels``, ``.txt``
    for the extension (as ultralytics does), or the ``.txt`` beside it when no such folder."""
    parts = image.parts
    if "images" in parts[:-1]:
        i = len(parts) - 2 - parts[-2::-1].index("images")
        image = Path(*parts[:i], "labels", *parts[i + 1 :])
    return image.with_suffix(".txt")


def _images_under(folder: Path, recursive: bool = True) -> list[Path]:
    found = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in found if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


def _yaml_file(folder: Path) -> Path | None:
    return next((folder / n for n in _YAML_NAMES if (folder / n).is_file()), None)


def find(path: Path) -> Path | None:
    """``path`` if it is a YOLO txt dataset (a ``data.yaml``, or a folder with one, with
    ``images/`` and ``labels/``, or with images and same-named ``.txt`` beside them), else None."""
    if path.is_file():
        return path if path.suffix.lower() in (".yaml", ".yml") else None
    if not path.is_dir():
        return None
    if _yaml_file(path) or (child_dir(path, "images") and child_dir(path, "labels")):
        return path
    beside = any(p.with_suffix(".txt").is_file() for p in _images_under(path, recursive=False))
    return path if beside else None


def _load_yaml(path: Path) -> dict:
    import yaml

    try:
        cfg = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise YoloError(f"{path}: unreadable dataset YAML ({first})") from None
    if not isinstance(cfg, dict):
        raise YoloError(f"{path}: not a dataset YAML (expected keys path, train, val, names)")
    return cfg


def _yaml_names(names, path: Path) -> list[str]:
    """``names:`` as a list, or an ``{id: name}`` map with ids 0..n-1."""
    if isinstance(names, dict):
        if sorted(names) != list(range(len(names))):
            raise YoloError(f"{path}: names ids must be 0..{len(names) - 1}, got {sorted(names)}")
        names = [names[i] for i in range(len(names))]
    if not isinstance(names, list) or not names:
        raise YoloError(f"{path}: names must be a non-empty list or {{id: name}} map")
    return [str(n) for n in names]


def _resolve(entry: str, data_root: Path, yaml_dir: Path) -> Path:
    """A ``data.yaml`` split entry as a path: absolute, else under ``path``, else under the
    YAML's folder; a leading ``../`` that leads nowhere is dropped (Roboflow exports)."""
    p = Path(entry)
    if p.is_absolute():
        return p
    tries = [data_root / p, yaml_dir / p]
    if entry.startswith("../"):
        tries.append(data_root / entry[3:])
    return next((t for t in tries if t.exists()), tries[0])


def _listed_images(path: Path, data_root: Path, problems: Problems) -> list[Path]:
    images = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        p = Path(line.strip())
        if not p.is_absolute():
            p = next((q for q in (path.parent / p, data_root / p) if q.is_file()), path.parent / p)
        if p.is_file():
            images.append(p)
        else:
            problems.add(path, "missing-image", f"line {n}: {p} not found")
    return images


def _image_sets(
    cfg: dict, yaml_path: Path | None, data_root: Path, problems: Problems
) -> tuple[dict[str | None, list[Path]], list[Path]]:
    """Images per split, and the image folders whose label folders to check for strays."""
    sets: dict[str | None, list[Path]] = {}
    folders = []
    declared = {s: cfg[s] for s in SPLITS if cfg.get(s)}
    for split, entries in declared.items():
        for entry in entries if isinstance(entries, list) else [entries]:
            p = _resolve(str(entry), data_root, yaml_path.parent)
            if p.is_dir():
                sets.setdefault(split, []).extend(_images_under(p))
                folders.append(p)
            elif p.is_file() and p.suffix.lower() == ".txt":
                sets.setdefault(split, []).extend(_listed_images(p, data_root, problems))
            else:
                problems.add(yaml_path, "missing-image", f"{split}: {p} does not exist")
                sets.setdefault(split, [])
    if declared:
        return sets, folders
    images = child_dir(data_root, "images")
    if images is None:
        return {None: _images_under(data_root, recursive=False)}, []
    split_dirs = [c for c in sorted(images.iterdir()) if c.is_dir() and split_from_name(c.name)]
    for d in split_dirs:
        sets.setdefault(split_from_name(d.name), []).extend(_images_under(d))
    return (sets, split_dirs) if split_dirs else ({None: _images_under(images)}, [images])


def parse_labels(path: Path) -> tuple[list[tuple[int, float, float, float, float]], list[str]]:
    """Rows ``(class, cx, cy, w, h)`` of a label file, and one message per malformed line."""
    rows, bad = [], []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        try:
            values = [float(v) for v in fields]
        except ValueError:
            values = []
        if len(values) not in (5, 6) or not values[0].is_integer() or values[0] < 0:
            bad.append(f"line {n}: expected 'class cx cy w h [conf]', got {line.strip()!r}")
            continue
        rows.append((int(values[0]), *values[1:5]))
    return rows, bad


def _annotation(
    image: Path, rows: list, bad: list[str], own: list[str] | None, index: dict[int, int]
) -> Annotation:
    label = label_path(image)
    a = Annotation(image, label if label.is_file() else image, normalized=True)
    for message in bad:
        a.problem("malformed-label", f"{message}; line skipped")
    boxes, classes = [], []
    for c, *cxcywh in rows:
        if c not in index:
            known = f"{len(own)} names" if own else "no class list"
            a.problem("unknown-class", f"class id {c} is not in the class list ({known}); dropped")
            continue
        boxes.append(cxcywh)
        classes.append(index[c])
    a.boxes = convert(np.array(boxes, np.float32).reshape(-1, 4), "cxcywh", "xyxy")
    a.classes = np.array(classes, np.int32)
    return a


def _stray_labels(folders: list[Path], images: set[Path], problems: Problems) -> None:
    expected = {label_path(p) for p in images}
    for folder in folders:
        labels = label_path(folder / "x").parent
        if labels == folder or not labels.is_dir():
            continue
        for txt in sorted(labels.rglob("*.txt")):
            if txt not in expected and txt.name != "classes.txt":
                problems.add(txt, "missing-image", f"label file has no image in {folder}")


def read(root: Path, names: list[str] | None, problems: Problems) -> tuple[list[str], Parts]:
    """Read the YOLO txt dataset at ``root`` (a folder or its ``data.yaml``) → class names and
    annotations by split; boxes stay normalized until the images' sizes are known.

    Class names: the YAML's ``names``, else ``classes.txt`` in the dataset or its ``labels/``;
    with ``names`` given, labels are mapped onto it by name (by id without a class list);
    with neither, classes are called by their ids (``"0"``, ``"1"``, …).
    """
    yaml_path = root if root.is_file() else _yaml_file(root)
    cfg = _load_yaml(yaml_path) if yaml_path else {}
    base = yaml_path.parent if yaml_path else root
    data_root = Path(str(cfg["path"])) if cfg.get("path") else base
    data_root = data_root if data_root.is_absolute() else base / data_root
    if not data_root.is_dir():  # a moved dataset: its YAML's folder is the root
        data_root = base
    if "names" in cfg:
        own = _yaml_names(cfg["names"], yaml_path)
    else:
        lists = [data_root / "classes.txt", data_root / "labels" / "classes.txt"]
        own = next((read_class_list(p) for p in lists if p.is_file()), None)
    sets, folders = _image_sets(cfg, yaml_path, data_root, problems)
    images = {p for ps in sets.values() for p in ps}
    labels = {}
    for image in images:
        label = label_path(image)
        try:
            labels[image] = parse_labels(label) if label.is_file() else ([], [])
        except (OSError, UnicodeDecodeError) as e:
            labels[image] = ([], [f"unreadable label file ({e})"])
    ids = {row[0] for rows, _ in labels.values() for row in rows}
    if names is None:
        names = own or [str(i) for i in range(max(ids, default=-1) + 1)]
        index = {i: i for i in range(len(names))}
    else:
        position = {n: i for i, n in enumerate(names)}
        source = own or [str(i) for i in range(len(names))]
        index = {i: position[n] for i, n in enumerate(source) if n in position}
    records = {image: _annotation(image, *labels[image], own, index) for image in images}
    _stray_labels(folders, images, problems)
    return names, {split: [records[p] for p in ps] for split, ps in sets.items()}


def write(
    out: Path, names: list[str], parts: dict[str, list[Sample]], ids: dict[Path, str]
) -> None:
    """Write ``out/images/<split>/<id>.<ext>`` (hard-linked), ``out/labels/<split>/<id>.txt``
    and ``out/data.yaml``."""
    for split, samples in parts.items():
        for s in samples:
            link_or_copy(s.image, out / "images" / split / f"{ids[s.image]}{s.image.suffix}")
            label = out / "labels" / split / f"{ids[s.image]}.txt"
            label.parent.mkdir(parents=True, exist_ok=True)
            label.write_text(label_text(s.boxes, s.classes, s.width, s.height))
    write_names(out, names, parts)
