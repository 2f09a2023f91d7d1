"""``yolo data check``: a dataset read with every image decoded, and its plain-text report."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from yolo_cli.data.dataset import Dataset
from yolo_cli.data.load import build, read_source, split_arg


def check_dataset(path: str | Path, split: str | None = None) -> Dataset:
    """Read the dataset at ``path`` (``split``: train, val, test, or all/None for every image)
    decoding every image; may return no samples (all bad). Raises as
    :func:`~yolo_cli.data.load.load_dataset` for a missing path or an unknown format."""
    split = split_arg(split)
    return build(read_source(path), split, verify=True)


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
