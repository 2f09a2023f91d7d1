"""Product defaults, in one place. Values follow the course notes (see DESIGN.md)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from yolo_cli.errors import YoloError


@dataclass(frozen=True)
class Defaults:
    img_size: int = 416
    stride: int = 32
    num_anchors: int = 5
    conf_threshold: float = 0.6
    nms_iou: float = 0.5
    eval_iou: float = 0.5
    eval_conf: float = 0.001
    max_det: int = 100
    max_boxes: int = 100
    min_visible: float = 0.4  # augmentation drops objects less visible than this after a crop
    lambda_coord: float = 5.0
    lambda_obj: float = 1.0
    lambda_noobj: float = 0.5
    ignore_iou: float = 0.6
    seed: int = 0
    batch: int = 16
    epochs: int = 30
    lr: float = 1e-3
    warmup_epochs: float = 1.0
    synth_classes: tuple[str, ...] = ("pedestrian", "car", "motorcycle")
    synth_scenes: int = 2000  # the default synthetic dataset
    # train, val, test shares of a dataset without splits of its own (and of synthetic scenes)
    split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    val_from_train: float = 0.1  # val carved from a train split listed without one (raccoon)
    letterbox_fill: int = 114  # grey of letterbox borders and of areas augmentation leaves empty
    # images larger than this (pixels, read from the header before decoding) are refused:
    # Pillow's own default; $YOLO_CLI_MAX_PIXELS overrides it
    max_pixels: int = 89_478_485
    # sliding-window baselines: the course's LeNet-5 input (32×32×3); √2-spaced pyramid whose
    # windows span 32…256 px of the original image; crops per classifier call (bounds memory)
    window_crop: int = 32
    window_scales: tuple[float, ...] = (1.0, 0.707, 0.5, 0.354, 0.25, 0.177, 0.125)
    window_batch: int = 256
    window_crops_per_image: int = 16
    bench_images: int = 20  # yolo bench: the naive sliding window takes seconds per 416-px image


DEFAULTS = Defaults()

PACKAGE_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODEL = PACKAGE_ROOT / "models" / "default.keras"
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")
SPLITS = ("train", "val", "test")
SPLIT_ALL = "all"  # --split all: every image of a dataset
DATASET_FORMATS = ("voc", "coco", "yolo")  # read and written by yolo_cli.data


def datasets_root() -> Path:
    """Where the shared real datasets live: $YOLO_CLI_DATASETS, else ../shared/datasets."""
    env = os.environ.get("YOLO_CLI_DATASETS")
    return Path(env) if env else PACKAGE_ROOT.parent / "shared" / "datasets"


def cache_dir() -> Path:
    """Cache for generated data (the synthetic default dataset): $YOLO_CLI_CACHE or ~/.cache."""
    env = os.environ.get("YOLO_CLI_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "yolo-cli"


def max_pixels() -> int:
    """The image pixel cap: $YOLO_CLI_MAX_PIXELS if set (a positive integer), else the default."""
    env = os.environ.get("YOLO_CLI_MAX_PIXELS")
    if env is None or not env.strip():
        return DEFAULTS.max_pixels
    try:
        value = int(env.replace("_", ""))
    except ValueError:
        value = 0
    if value <= 0:
        raise YoloError(f"YOLO_CLI_MAX_PIXELS: expected a positive whole number, got {env!r}")
    return value
