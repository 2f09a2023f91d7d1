"""Synthetic street scenes as a dataset: splits, the YOLO txt writer, the cached default.

Scenes are rendered by :mod:`yolo_cli.data.scenes`; here they are assigned to splits, written
as an ultralytics-layout YOLO txt dataset, and cached as the default dataset that ``train``,
``eval`` and ``anchors`` use when no ``--data`` is given.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np

from yolo_cli.config import DEFAULTS, SPLITS, cache_dir
from yolo_cli.data.scenes import render_scene, scene_rng
from yolo_cli.data.yolo_txt import label_text, write_names
from yolo_cli.errors import YoloError
from yolo_cli.fileio import atomic_path, check_writable

log = logging.getLogger(__name__)

# Bump when the rendering (yolo_cli.data.scenes) changes, so cached datasets are regenerated.
RECIPE_VERSION = 1
JPEG_QUALITY = 92

_GOLDEN = (math.sqrt(5) - 1) / 2


def assign_split(seed: int, index: int, fractions=DEFAULTS.split_fractions) -> str:
    """The split of scene ``index``: ``train``, ``val`` or ``test`` in the given fractions.

    A golden-ratio sequence with a seed-dependent start spreads the splits evenly over any run
    of scenes: from about 20 scenes on, every split with a share of 0.1 gets images.
    """
    start = np.random.default_rng([seed, 2**32 - 1]).random()  # a stream no scene index uses
    u = (start + index * _GOLDEN) % 1.0
    k = min(int(np.searchsorted(np.cumsum(fractions), u, side="right")), 2)
    while fractions[k] == 0:  # rounding in the cumulative sum must not pick an empty split
        k -= 1
    return SPLITS[k]


def split_sizes(n: int, seed: int, fractions=DEFAULTS.split_fractions) -> dict[str, int]:
    """How many of the first ``n`` scenes each split gets, for the splits that get any."""
    splits = [assign_split(seed, i, fractions) for i in range(n)]
    return {s: splits.count(s) for s in SPLITS if s in splits}


def _check_fractions(out_dir: Path, fractions) -> tuple[float, float, float]:
    f = tuple(float(x) for x in fractions)
    finite = all(math.isfinite(x) for x in f)
    if len(f) != 3 or not finite or min(f) < 0 or abs(sum(f) - 1) > 1e-6 or f[0] == 0:
        raise YoloError(
            f"{out_dir}: split fractions must be three non-negative numbers (train, val, test) "
            f"summing to 1 with train > 0, got {fractions}"
        )
    return f


def write_synthetic(
    out_dir: str | Path,
    n: int,
    seed: int = DEFAULTS.seed,
    size: int = DEFAULTS.img_size,
    fractions=DEFAULTS.split_fractions,
    names: tuple[str, ...] = DEFAULTS.synth_classes,
) -> Path:
    """Render ``n`` scenes into a YOLO txt dataset (ultralytics layout) at ``out_dir``, a new or
    empty folder (another is refused: a dataset is never mixed into one already there).

    Writes ``images/<split>/synth_<i>.jpg``, ``labels/<split>/synth_<i>.txt`` (empty for a scene
    without objects) and ``data.yaml`` listing the splits that got images (see
    :func:`split_sizes`); the same arguments give the same bytes. The folder appears only once
    complete (written beside it, then renamed). Returns ``out_dir``.
    """
    out_dir = Path(out_dir)
    fractions = _check_fractions(out_dir, fractions)
    if n < 1:
        raise YoloError(f"{out_dir}: the number of scenes must be at least 1, got {n}")
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise YoloError(f"{out_dir}: already exists and is not an empty folder")
    check_writable(out_dir, folder=True)
    with atomic_path(out_dir) as folder:
        _render_into(folder, n, seed, size, fractions, names)
    return out_dir


def _render_into(folder: Path, n: int, seed: int, size: int, fractions, names) -> None:
    """:func:`write_synthetic`'s files, written into ``folder``."""
    import cv2

    # every option that changes the bytes is fixed, so a seed always gives the same files
    jpeg_params = [
        cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY,
        cv2.IMWRITE_JPEG_OPTIMIZE, 0,
        cv2.IMWRITE_JPEG_PROGRESSIVE, 0,
    ]  # fmt: skip
    used = list(split_sizes(n, seed, fractions))
    for split in used:
        (folder / "images" / split).mkdir(parents=True, exist_ok=True)
        (folder / "labels" / split).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        image, boxes, classes = render_scene(scene_rng(seed, i), size, names)
        split, stem = assign_split(seed, i, fractions), f"synth_{i:05d}"
        ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), jpeg_params)
        if not ok:
            raise YoloError(f"scene {i}: OpenCV could not encode it as JPEG")
        (folder / "images" / split / f"{stem}.jpg").write_bytes(jpeg.tobytes())
        (folder / "labels" / split / f"{stem}.txt").write_text(
            label_text(boxes, classes, size, size)
        )
    write_names(folder, list(names), used)


def default_synthetic(
    n: int = DEFAULTS.synth_scenes, seed: int = DEFAULTS.seed, size: int = DEFAULTS.img_size
) -> Path:
    """The cached synthetic dataset ``cache_dir()/synth-v<recipe>-n<n>-s<seed>-<size>``.

    Generated on first use into a temporary sibling folder and renamed into place when complete
    (:func:`yolo_cli.fileio.atomic_path`), so an interrupted generation never passes for a
    finished one. Another ``seed`` gives an independent test set. Returns the dataset folder
    (holding ``data.yaml``).

    Generating logs one INFO line on this module's logger, saying what and where (the CLI
    prints it); a cached dataset logs nothing.
    """
    import yaml

    final = cache_dir() / f"synth-v{RECIPE_VERSION}-n{n}-s{seed}-{size}"
    if final.is_dir():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    log.info("first use: generating %d synthetic scenes into %s (reused by later runs)", n, final)
    try:
        with atomic_path(final) as tmp:
            write_synthetic(tmp, n, seed, size)
            # data.yaml names its absolute root: point it where the folder is about to live.
            meta_path = tmp / "data.yaml"
            meta = yaml.safe_load(meta_path.read_text())
            meta["path"] = str(final.resolve())
            meta_path.write_text(yaml.safe_dump(meta, sort_keys=False, allow_unicode=True))
    except YoloError:
        if not final.is_dir():  # not a concurrent generation that finished first
            raise
    return final
