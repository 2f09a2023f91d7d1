"""Detection files: what ``yolo detect`` writes and ``yolo eval --predictions`` reads.

Three forms, all boxes in pixels of the original image unless stated:

- detect records: one JSON object per image, ``{"file", "width", "height", "detections":
  [{"xyxy": [x1, y1, x2, y2], "score", "class": name}]}`` (:func:`to_json_record`), as a JSON
  list or as JSON lines (one record per line, as ``yolo detect`` prints them);
- COCO results: a JSON list of ``{"image_id" | "file_name", "category_id" | "category",
  "bbox": [x, y, w, h], "score"}`` (:func:`to_coco_results`), or a COCO-style object whose
  ``"annotations"`` are such results and whose ``"categories"`` (``[{"id", "name"}]``) name the ids;
- YOLO txt: one ``<image stem>.txt`` per image, lines ``class cx cy w h conf`` normalized to the
  image size (:func:`write_yolo_txt` with ``save_conf``).

How :func:`read_predictions` finds images and classes:

- image: ``file_name`` / ``file`` is matched to the dataset's image file name, then to its
  stem. Without one, ``image_id`` is the dataset's own image id where it has them (a COCO
  dataset: the ``id`` of its ``images``, the ids a standard COCO results file holds; ``7`` and
  ``"7"`` are the same id). On a dataset without ids, a string ``image_id`` is a file name or
  stem, and an integer one is the image whose stem is that number when every stem is a number
  (how ultralytics writes ids), else the 0-based position in ``dataset.samples`` (what
  :func:`to_coco_results` writes without ``image_ids``). YOLO txt files are matched by stem.
- class: a name (``category``, ``category_name``, a record's ``class``, or a string
  ``category_id``) must be one of ``dataset.names``. An integer ``category_id`` is looked up in the
  file's ``categories`` when it has them (by name), else in the dataset's own category ids
  (``dataset.category_ids``, a COCO dataset's). Otherwise it is the 0-based index into
  ``dataset.names``, except that a file whose integer ids all lie in ``1..C`` with none equal to 0
  is read as 1-based (the COCO habit). A 0-based file that never uses class 0 is therefore
  misread: write names (:func:`to_coco_results` does) or a ``categories`` list to be explicit.

A prediction is used only when its box and score make sense for its image: finite numbers,
width and height not negative, score in [0, 1], and every coordinate within
:data:`~yolo_cli.config.PREDICTION_MARGIN` image sizes of the image (a box far outside it is a
broken file, not a detection). Lines or entries that can't be used are skipped and counted in
:class:`Problems` (``malformed-prediction``, ``unknown-image``, ``unknown-class``); a file that
can't be read at all raises :class:`YoloError`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from yolo_cli.boxes import convert, denormalize
from yolo_cli.config import PREDICTION_MARGIN
from yolo_cli.data.dataset import Dataset, Problems
from yolo_cli.data.yolo_txt import label_text
from yolo_cli.errors import YoloError
from yolo_cli.postprocess import Detections

_PIXEL_DECIMALS = 3
_SCORE_DECIMALS = 6  # as label_text writes confidences


def to_json_record(
    file: str | Path, width: int, height: int, detections: Detections, names: Sequence[str]
) -> dict:
    """One image's detections as a JSON-ready dict (module doc, "detect records").

    detections: boxes ``(N, 4)`` xyxy pixels of the ``width × height`` image; classes index ``names``.
    """
    return {
        "file": str(file),
        "width": int(width),
        "height": int(height),
        "detections": [
            {
                "xyxy": [round(float(v), _PIXEL_DECIMALS) for v in box],
                "score": round(float(score), _SCORE_DECIMALS),
                "class": names[int(cls)],
            }
            for box, score, cls in zip(
                detections.boxes, detections.scores, detections.classes, strict=True
            )
        ],
    }


def to_coco_results(
    files: Sequence[str | Path],
    detections: Sequence[Detections],
    names: Sequence[str],
    image_ids: Sequence | None = None,
) -> list[dict]:
    """COCO results for images ``files`` (aligned with ``detections``): one dict per box.

    ``image_id`` is ``image_ids[i]`` (the dataset's own ids, e.g. ``sample.image_id``) or, without
    them, the image's position in ``files``; ``category_id`` is the 0-based class index;
    ``file_name`` and ``category`` (the class name) are written too, so reading back is unambiguous.
    ``bbox`` is ``[x, y, w, h]`` pixels. pycocotools' ``loadRes`` accepts the list as it is.
    """
    results = []
    ids = range(len(files)) if image_ids is None else image_ids
    for image_id, file, dets in zip(ids, files, detections, strict=True):
        for box, score, cls in zip(
            convert(dets.boxes, "xyxy", "xywh"), dets.scores, dets.classes, strict=True
        ):
            results.append(
                {
                    "image_id": image_id,
                    "file_name": Path(file).name,
                    "category_id": int(cls),
                    "category": names[int(cls)],
                    "bbox": [round(float(v), _PIXEL_DECIMALS) for v in box],
                    "score": round(float(score), _SCORE_DECIMALS),
                }
            )
    return results


def write_yolo_txt(
    path: str | Path, detections: Detections, width: int, height: int, save_conf: bool
) -> None:
    """Write one image's detections as YOLO txt (``class cx cy w h [conf]``, normalized), as
    ``yolo detect --save-txt`` does.

    detections: boxes ``(N, 4)`` xyxy pixels of the ``width × height`` image. The file is
    written even when empty, so that every image has one; parent folders are created; the
    write is atomic (:func:`yolo_cli.fileio.write_atomic`).
    """
    from yolo_cli.fileio import write_atomic

    scores = detections.scores if save_conf else None
    write_atomic(path, label_text(detections.boxes, detections.classes, width, height, scores))


def read_predictions(path: str | Path, dataset: Dataset) -> tuple[list[Detections], Problems]:
    """Read a detection file or folder (module doc) for ``dataset``.

    Returns one :class:`Detections` per ``dataset.samples`` entry (boxes xyxy pixels, sorted by
    descending score; empty where the file has nothing for the image) and the problems met.
    Raises :class:`YoloError` when ``path`` is missing or can't be read or parsed as a whole.
    """
    path = Path(path)
    if not path.exists():
        raise YoloError(f"{path}: no such file or folder")
    collected = _Collector(dataset, path)
    if path.is_dir():
        _read_yolo_folder(path, collected)
    else:
        _read_json(path, collected)
    return collected.detections(), collected.problems


class _Collector:
    """Resolves images and classes against the dataset and gathers boxes per sample."""

    def __init__(self, dataset: Dataset, source: Path):
        self.dataset = dataset
        self.source = source
        self.problems = Problems()
        self.by_name: dict[str, int] = {}
        self.by_stem: dict[str, int] = {}
        self.by_id: dict[str, int] = {}
        for i, sample in enumerate(dataset.samples):
            self.by_name.setdefault(Path(sample.image).name, i)
            self.by_stem.setdefault(Path(sample.image).stem, i)
            if sample.image_id is not None:
                self.by_id.setdefault(_id_key(sample.image_id), i)
        stems = [Path(s.image).stem for s in dataset.samples]
        self.by_number = (
            {int(stem): i for i, stem in reversed(list(enumerate(stems)))}
            if stems and all(stem.isdigit() for stem in stems)
            else None
        )
        self.class_index = {name: k for k, name in enumerate(dataset.names)}
        self.boxes: list[list[np.ndarray]] = [[] for _ in dataset.samples]
        self.scores: list[list[float]] = [[] for _ in dataset.samples]
        self.classes: list[list[int]] = [[] for _ in dataset.samples]

    def image(self, file_name, image_id, where: str) -> int | None:
        """Sample index for a file name, else an image id (module doc); counts a problem if none."""
        if isinstance(file_name, str):
            found = self._by_file(file_name)
        elif self.by_id and _is_key(image_id):
            found = self.by_id.get(_id_key(image_id))
        elif isinstance(image_id, str):
            found = self._by_file(image_id)
        elif _is_integer(image_id) and self.by_number is not None:
            found = self.by_number.get(int(image_id))
        elif _is_integer(image_id) and 0 <= image_id < len(self.dataset.samples):
            found = int(image_id)
        else:
            found = None
        if found is None:
            ref = file_name if isinstance(file_name, str) else image_id
            self.problems.add(where, "unknown-image", f"no image {ref!r} in the dataset")
        return found

    def _by_file(self, ref: str) -> int | None:
        name = Path(ref).name
        return self.by_name.get(name, self.by_stem.get(Path(name).stem))

    def class_by_name(self, name: str, where: str) -> int | None:
        if name in self.class_index:
            return self.class_index[name]
        self.problems.add(where, "unknown-class", f"class {name!r} is not one of the dataset's")
        return None

    def class_by_index(self, index: int, where: str) -> int | None:
        if 0 <= index < len(self.dataset.names):
            return index
        self.problems.add(where, "unknown-class", f"class id {index} is out of range")
        return None

    def malformed(self, where: str, message: str) -> None:
        self.problems.add(where, "malformed-prediction", message)

    def add(self, sample: int, xyxy, score: float, cls: int, where: str) -> None:
        """Keep one prediction, or count it as malformed when it makes no sense (module doc)."""
        xyxy = np.asarray(xyxy, np.float64).reshape(4)
        s = self.dataset.samples[sample]
        problem = _box_problem(xyxy, score, s.width, s.height)
        if problem is not None:
            self.malformed(where, problem)
            return
        self.boxes[sample].append(xyxy.astype(np.float32))
        self.scores[sample].append(score)
        self.classes[sample].append(cls)

    def detections(self) -> list[Detections]:
        out = []
        for boxes, scores, classes in zip(self.boxes, self.scores, self.classes, strict=True):
            dets = Detections(
                np.array(boxes, np.float32).reshape(-1, 4),
                np.array(scores, np.float32),
                np.array(classes, np.int32),
            )
            out.append(dets.take(np.argsort(-dets.scores, kind="stable")))
        return out


def _read_yolo_folder(folder: Path, collected: _Collector) -> None:
    for file in sorted(folder.glob("*.txt")):
        sample = collected.by_stem.get(file.stem)
        if sample is None:
            collected.problems.add(file, "unknown-image", f"no image with stem {file.stem!r}")
            continue
        s = collected.dataset.samples[sample]
        for n, line in enumerate(_read_text(file).splitlines(), start=1):
            fields = line.split()
            if not fields:
                continue
            where = f"{file}:{n}"
            values = _numbers(fields)
            if len(fields) != 6 or values is None:
                collected.malformed(where, f"expected 'class cx cy w h conf', got {line.strip()!r}")
                continue
            if not float(values[0]).is_integer():
                collected.malformed(where, f"class {fields[0]!r} is not an integer")
                continue
            cls = collected.class_by_index(int(values[0]), where)
            if cls is None:
                continue
            box = denormalize(convert(values[1:5], "cxcywh", "xyxy"), s.width, s.height)
            collected.add(sample, box, values[5], cls, where)


def _read_json(path: Path, collected: _Collector) -> None:
    content = _parse_json(path, _read_text(path), collected)
    categories = None
    if isinstance(content, dict) and "detections" in content:  # a single record
        content = [content]
    elif isinstance(content, dict) and isinstance(content.get("annotations"), list):
        categories = content.get("categories")
        content = content["annotations"]
    if not isinstance(content, list):
        raise YoloError(f"{path}: expected a list of detections or of per-image records")
    category_of = _category_ids(content, categories, collected.dataset)
    for n, entry in enumerate(content):
        where = f"{path}[{n}]"
        if isinstance(entry, dict) and isinstance(entry.get("detections"), list):
            _read_record(entry, where, collected)
        elif isinstance(entry, dict) and "bbox" in entry:
            _read_coco_result(entry, where, category_of, collected)
        else:
            collected.malformed(where, "neither a COCO result (bbox) nor a record (detections)")


def _parse_json(path: Path, text: str, collected: _Collector):
    """One JSON document, or JSON lines (what ``yolo detect`` prints) whatever the suffix.

    Text is read as JSON lines when it is not one document and its first line is an object;
    then lines that don't parse are problems, not fatal.
    """
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        whole = YoloError(f"{path}: not valid JSON ({e})")
    lines = [(n, line) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]
    try:
        first = json.loads(lines[0][1]) if lines else None
    except json.JSONDecodeError:
        first = None
    if not isinstance(first, dict):
        raise whole from None
    entries = [first]
    for n, line in lines[1:]:
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError as e:
            collected.malformed(f"{path}:{n}", f"not valid JSON ({e})")
    return entries


def _read_record(record: dict, where: str, collected: _Collector) -> None:
    sample = collected.image(record.get("file"), None, where)
    if sample is None:
        return
    for m, det in enumerate(record["detections"]):
        at = f"{where}.detections[{m}]"
        box = _numbers(det.get("xyxy")) if isinstance(det, dict) else None
        score = _numbers([det.get("score")]) if isinstance(det, dict) else None
        if box is None or len(box) != 4 or score is None:
            collected.malformed(at, "a detection needs xyxy (4 numbers) and a score")
            continue
        name = det.get("class")
        if isinstance(name, str):
            cls = collected.class_by_name(name, at)
        elif _is_integer(name):
            cls = collected.class_by_index(int(name), at)
        else:
            collected.malformed(at, f"class {name!r} is neither a name nor an index")
            continue
        if cls is not None:
            collected.add(sample, box, score[0], cls, at)


def _read_coco_result(entry: dict, where: str, category_of: dict, collected: _Collector) -> None:
    box = _numbers(entry.get("bbox"))
    score = _numbers([entry.get("score")])
    if box is None or len(box) != 4 or score is None:
        collected.malformed(where, "a COCO result needs bbox [x, y, w, h] and a score")
        return
    file_name = entry.get("file_name", entry.get("file"))
    sample = collected.image(file_name, entry.get("image_id"), where)
    if sample is None:
        return
    name = entry.get("category", entry.get("category_name"))
    category = entry.get("category_id")
    if isinstance(name, str) or isinstance(category, str):
        cls = collected.class_by_name(name if isinstance(name, str) else category, where)
    elif _is_integer(category):
        cls = category_of.get(int(category))
        if cls is None:
            collected.problems.add(where, "unknown-class", f"category_id {category} is unknown")
    else:
        collected.malformed(where, "a COCO result needs a category_id or a category name")
        return
    if cls is not None:
        collected.add(sample, convert(box, "xywh", "xyxy"), score[0], cls, where)


def _category_ids(entries: list, categories, dataset: Dataset) -> dict[int, int]:
    """Integer ``category_id`` → class index, by the rule in the module doc."""
    names = dataset.names
    if isinstance(categories, list):
        index = {name: k for k, name in enumerate(names)}
        return {
            int(c["id"]): index[c["name"]]
            for c in categories
            if isinstance(c, dict) and _is_integer(c.get("id")) and c.get("name") in index
        }
    if dataset.category_ids:
        return dict(dataset.category_ids)
    ids = {
        int(e["category_id"])
        for e in entries
        if isinstance(e, dict) and _is_integer(e.get("category_id"))
    }
    one_based = bool(ids) and 0 not in ids and ids <= set(range(1, len(names) + 1))
    return {k + 1 if one_based else k: k for k in range(len(names))}


def _numbers(values) -> list[float] | None:
    """Finite floats parsed from a list of numbers or numeric strings; None if any is not."""
    if not isinstance(values, list | tuple):
        return None
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int | float | str):
            return None
        try:
            f = float(v)
        except ValueError:
            return None
        if not math.isfinite(f):
            return None
        out.append(f)
    return out


def _box_problem(xyxy: np.ndarray, score: float, width: int, height: int) -> str | None:
    """Why a prediction (box ``(4,)`` xyxy pixels of a ``width × height`` image, its score)
    cannot be scored, or None when it can (module doc)."""
    if not 0.0 <= score <= 1.0:
        return f"score {score:g} is outside [0, 1]"
    x1, y1, x2, y2 = xyxy
    if x2 < x1 or y2 < y1:
        return f"box {_fmt(xyxy)} has a negative width or height"
    reach = np.array([width, height, width, height], np.float64) * PREDICTION_MARGIN
    size = np.array([width, height, width, height], np.float64)
    if (xyxy < -reach).any() or (xyxy > size + reach).any():
        return f"box {_fmt(xyxy)} lies far outside the {width}x{height} image"
    return None


def _fmt(xyxy: np.ndarray) -> str:
    return "[" + ", ".join(f"{v:.6g}" for v in xyxy) + "]"


def _is_key(value) -> bool:
    """An image id a file may use: an integer (also as a whole float) or a string."""
    return isinstance(value, str) or _is_integer(value)


def _id_key(value) -> str:
    """One spelling per image id: ``7``, ``7.0`` and ``"7"`` are the same id."""
    return str(int(value)) if _is_integer(value) else str(value)


def _is_integer(value) -> bool:
    return (isinstance(value, int) and not isinstance(value, bool)) or (
        isinstance(value, float) and value.is_integer()
    )


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise YoloError(f"{path}: cannot read ({e})") from None
