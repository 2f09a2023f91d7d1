"""Product defaults, in one place. Values follow the course notes (see DESIGN.md)."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from yolo_cli.errors import YoloError


@dataclass(frozen=True)
class Defaults:
    img_size: int = 416
    stride: int = 32  # the network's coarsest stride: input sides are multiples of it
    head_strides: tuple[int, ...] = (8, 16, 32)  # the strides a head may have, finest first
    num_anchors: int = 5
    conf_threshold: float = 0.6
    iou_conf: float = 0.25  # a model trained with --loss iou: its p_c estimates the box's IoU
    nms_iou: float = 0.5
    # each box NMS keeps moves to the score-weighted mean of the boxes it dropped and itself
    # (yolo_cli.postprocess.vote): +0.06 mAP@[.5:.95] on BCCD, +0.04 raccoon, +0.02 highway
    box_vote: bool = True
    eval_iou: float = 0.5
    eval_conf: float = 0.001
    eval_batch: int = 8  # yolo eval: images per model call
    max_det: int = 100
    max_boxes: int = 100
    # training augmentation (yolo_cli.data.augment.Augmentation explains each choice):
    # an object keeps its label when at least min_visible of it shows and its visible box is
    # at least min_box_px wide and tall; what shows of any other object is painted grey
    min_visible: float = 0.25
    min_box_px: float = 2.0
    # share of training images made a mosaic of 4 (YOLOv5/v8: all); off: left out of the
    # default, 30 CPU minutes scored better without them (benchmarks/README.md, 2026-12-04)
    mosaic_p: float = 0.0
    aug_scale: tuple[float, float] = (0.5, 1.5)  # each image's random scale (YOLOv5: 1 ± 0.5)
    mosaic_centre: tuple[float, float] = (0.25, 0.75)  # where the 4 tiles meet, share of a side
    image_cache_mb: int = 1024  # decoded training images an input pipeline keeps in memory
    lambda_coord: float = 5.0
    lambda_obj: float = 1.0
    lambda_noobj: float = 0.5
    ignore_iou: float = 0.6
    # the `iou` loss (yolo_cli.loss.IouAwareLoss): YOLOv5's box weight, and its class weight
    # expressed on the summed class cross-entropy (0.5 · nc/80 on the mean over nc classes)
    lambda_box: float = 0.05
    lambda_cls: float = 0.5 / 80
    anchor_t: float = 4.0  # the `ratio` assignment: anchors within 4× of the box's w and h
    seed: int = 0
    batch: int = 16
    epochs: int = 30
    lr: float = 1e-3  # the window classifier's Adam rate
    # yolo train's peak rate, ultralytics' optimizer=auto for short runs: lr_per_class · 5 /
    # (4 + classes), so 0.002 for one class, 0.0014 for BCCD's 3, 0.0011 for highway's 5
    lr_per_class: float = 2e-3
    width: float = 0.5  # channel multiplier of the backbone (1.0: tiny-YOLO's widths)
    patience: int = 0  # yolo train: epochs without a val fitness gain before stopping; 0: off
    # yolo train: val images may be this share of the images a run passes through the network
    # (yolo_cli.train.recipe.validates); the epochs between go unscored, never the last two
    val_share: float = 0.1
    # best.keras: the epoch of the highest w·(mAP@0.5, mAP@[.5:.95]) on val, YOLOv5/v8's
    # fitness; a few val images make mAP@0.5 alone a noisy pick of loose boxes
    fitness: tuple[float, float] = (0.1, 0.9)
    freeze: int = 0  # yolo train --weights: leading blocks kept frozen
    device: str = "auto"  # a GPU when there is one (yolo_cli.device)
    strategy: str = "auto"  # mirrored over several GPUs, else none (yolo_cli.device)
    method: str = "yolo"  # detect, eval: the detector (or a sliding-window baseline)
    board_images: int = 4  # validation images with predictions in TensorBoard, per best epoch
    # the training recipe (yolo_cli.train.recipe; README "Training" says why each)
    # 1: the course's stride-32 grid; 2: strides 16 and 32; 3: 8, 16, 32 (YOLOv8's P3–P5).
    # 2: the stride-8 grid costs a third of the training images a second, and in a time budget
    # those epochs weigh more than its gain on small objects (benchmarks/README.md, 2026-12-04)
    heads: int = 2
    anchors_per_head: int = 3  # with several heads (one head: num_anchors)
    loss: str = "iou"  # or "course" (yolo_cli.loss)
    assign: str = "ratio"  # or "best", the course's (yolo_cli.targets)
    close_mosaic: int = 10  # last epochs of a run without mosaics (YOLOv8)
    ema: bool = True  # validate and save a moving average of the weights (YOLOv5's ModelEMA)
    spp: bool = False  # pool the stride-32 features at 5, 9, 13 cells (YOLOv5's SPPF)
    ema_decay: float = 0.9999
    ema_span: float = 0.02  # the average spans this share of the steps so far (≤ 1/(1−decay))
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
    # yolo detect: seconds an URL or stream may take to answer, to open, and per frame read
    stream_timeout: float = 10.0
    # yolo detect: unreadable frames in a row after which a video file is taken to end (a
    # corrupt stretch shorter than this is skipped, its frames counted as lost)
    video_resync_frames: int = 250
    # sliding-window baselines: the course's LeNet-5 input (32×32×3); √2-spaced pyramid whose
    # windows span 32…256 px of the original image; crops per classifier call (bounds memory)
    window_crop: int = 32
    window_scales: tuple[float, ...] = (1.0, 0.707, 0.5, 0.354, 0.25, 0.177, 0.125)
    window_batch: int = 256
    window_crops_per_image: int = 16
    bench_images: int = 20  # yolo bench: the naive sliding window takes seconds per 416-px image
    calib_images: int = 200  # yolo export --int8: training images the calibration runs


DEFAULTS = Defaults()


class Range(NamedTuple):
    """The values a numeric option takes: ``low … high``, ``low`` itself excluded when
    ``low_open``."""

    low: float
    high: float
    low_open: bool = False

    def holds(self, value) -> bool:
        """Whether ``value`` is in range (NaN never is)."""
        above = value > self.low if self.low_open else value >= self.low
        return bool(above and value <= self.high)

    def describe(self) -> str:
        """``1..9``, or ``(0, 1]`` when ``low`` is excluded."""
        low, high = (str(v) if isinstance(v, int) else f"{v:g}" for v in (self.low, self.high))
        return f"({low}, {high}]" if self.low_open else f"{low}..{high}"

    def check(self, option: str, value) -> None:
        """Raise :class:`YoloError` (``--conf nan: expected a number in 0..1``) unless
        ``value`` is a finite number in range."""
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if not (number and math.isfinite(value) and self.holds(value)):
            raise YoloError(f"{option} {value!r}: expected a number in {self.describe()}")


@dataclass(frozen=True)
class Limits:
    """Ranges of numeric options and caps on files from outside (checked before trusting them).

    A model file is data: its size, its archive entries (declared and actual), the layer sizes
    its network config declares and its layer count are bounded before Keras builds anything.
    """

    img_size: tuple[int, int] = (DEFAULTS.stride, 4096)  # model input side, a stride multiple
    score: Range = Range(0.0, 1.0)  # score and IoU thresholds (--conf, --iou, --nms-iou)
    anchors_per_head: int = 16
    model_bytes: int = 1 << 30
    model_unpacked_bytes: int = 2 << 30
    model_entries: int = 64
    model_json_bytes: int = 16 << 20  # config.json and yolo_cli.json
    model_layers: int = 5000
    layer_dim: int = 16384  # filters, units, shape dimensions a config may declare
    url_image_bytes: int = 100 << 20  # yolo detect: an image URL's download
    # yolo train's numeric options
    epochs: Range = Range(1, 100_000)
    batch: Range = Range(1, 4096)
    lr: Range = Range(0.0, 1.0, low_open=True)  # a zero or negative step does not learn
    warmup_epochs: Range = Range(0.0, 1000.0)
    width: Range = Range(0.0625, 4.0)  # channel multiplier of the backbone
    lambda_obj: Range = Range(0.0, 1000.0, low_open=True)
    seed: Range = Range(0, 2**32 - 1)  # NumPy's and TensorFlow's seed range
    num_anchors: Range = Range(1, 9)
    freeze: Range = Range(0, 1000)  # blocks: this network's 7, or a converted one's layers
    max_steps: Range = Range(1, 10**9)
    minutes: Range = Range(0.0, 525_600.0, low_open=True)  # up to a year
    patience: Range = Range(0, 100_000)  # 0: no early stop
    heads: Range = Range(1, len(DEFAULTS.head_strides))
    mosaic: Range = Range(0.0, 1.0)
    close_mosaic: Range = Range(0, 100_000)
    val_share: Range = Range(0.0, 1.0, low_open=True)
    synth_scenes: Range = Range(1, 1_000_000)


LIMITS = Limits()


def check_img_size(size, option: str = "--img-size") -> None:
    """Raise :class:`YoloError` (``--img-size 100: expected a multiple of 32 from 32 to 4096``)
    unless ``size`` is a whole multiple of :attr:`Defaults.stride` within ``LIMITS.img_size``."""
    low, high = LIMITS.img_size
    whole = isinstance(size, int) and not isinstance(size, bool)
    if not (whole and low <= size <= high and size % DEFAULTS.stride == 0):
        raise YoloError(
            f"{option} {size!r}: expected a multiple of {DEFAULTS.stride} from {low} to {high}"
        )


# the score threshold a converted Darknet model detects at: Darknet's own `-thresh` default
# (its small models' scores run lower than the course's 0.6 assumes)
DARKNET_CONF = 0.25

PACKAGE_ROOT = Path(__file__).resolve().parent.parent


def _models_dir() -> Path:
    """The shipped models: package data of ``yolo_cli.models`` (the top-level ``models/`` folder,
    which setup.cfg maps into the package), found through ``importlib.resources`` in a wheel and
    in an editable install alike; the checkout's folder when the package is not installed."""
    from importlib.resources import files

    try:
        return Path(str(files("yolo_cli.models")))
    except ModuleNotFoundError:
        return PACKAGE_ROOT / "models"


MODELS_DIR = _models_dir()
# shipped models by short name (``--model NAME``), and which one each command uses by default
SHIPPED_MODELS = {"synthetic": "default.keras", "coco": "coco.keras", "street": "street.keras"}
DETECT_MODEL = "coco"  # a real photo needs a real model; eval's default stays offline
EVAL_MODEL = "synthetic"
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")
SPLITS = ("train", "val", "test")
SPLIT_ALL = "all"  # --split all: every image of a dataset
DATASET_FORMATS = ("voc", "coco", "yolo")  # read and written by yolo_cli.data
EXPORT_FORMATS = ("saved_model", "tflite", "onnx")  # yolo export --format


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


# yolo eval --predictions: a box coordinate more than this many image sizes outside its image
# is a broken prediction (skipped and counted), not a detection
PREDICTION_MARGIN = 1.0

# Names that mean the same class in different label sets (VOC, COCO, the synthetic scenes),
# for scoring a model on a dataset named otherwise (yolo eval; --class-map says more). Names
# are compared ignoring case, spaces, "_" and "-" ("dining table" is "diningtable"), so only
# true synonyms are listed here.
CLASS_SYNONYMS = (
    ("person", "pedestrian"),
    ("motorbike", "motorcycle"),
    ("bike", "bicycle"),
    ("aeroplane", "airplane", "plane"),
    ("tv", "tvmonitor", "television"),
    ("sofa", "couch"),
    ("car", "automobile"),
    ("truck", "lorry"),
)

# --augment (test-time augmentation): the model's input size times these, rounded to
# multiples of the stride, each on the image and on its horizontal mirror (YOLOv5's TTA uses
# 1, 0.83, 0.67; the course's multi-crop takes several crops of one size)
TTA_SCALES = (1.0, 0.75, 1.25)
