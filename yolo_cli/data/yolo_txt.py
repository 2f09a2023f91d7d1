"""YOLO txt datasets (ultralytics layout): ``images/<split>/X.jpg`` + ``labels/<split>/X.txt``.

A label file holds one object per line, ``class cx cy w h``, the box normalized to the image
size (fractions in [0, 1]); prediction files add a trailing confidence column. Class names
come from an ultralytics ``data.yaml`` (``names`` as a list or an ``{id: name}`` map).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from yolo_cli.boxes import convert, normalize

SPLITS = ("train", "val", "test")


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

    ``path`` is ``out_dir`` (absolute, as ultralytics resolves relative paths elsewhere), each
    split in ``splits`` (a subset of train/val/test) points at ``images/<split>``, and ``names``
    is the ``{id: name}`` map.
    """
    import yaml

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    content = {"path": str(out_dir.resolve())}
    for split in SPLITS:
        if split in set(splits):
            content[split] = f"images/{split}"
    content["nc"] = len(names)
    content["names"] = {i: str(name) for i, name in enumerate(names)}
    path = out_dir / "data.yaml"
    path.write_text(yaml.safe_dump(content, sort_keys=False, allow_unicode=True))
    return path
