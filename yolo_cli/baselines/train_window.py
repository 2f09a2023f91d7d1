"""The use case behind ``yolo train --method window``: the crop classifier of the sliding-window
baselines, trained from a detection dataset and written to a run folder.

The run folder (``runs/train/expN`` unless ``out`` is given) gets ``last.keras`` (with the
optimizer state) and ``best.keras`` (without), the layout of a YOLO run, so
``--model runs/train/expN/best.keras`` works for either. There is no per-epoch validation to
choose a best epoch from, so both hold the final weights. The score is the classifier's
accuracy on crops of the dataset's ``val`` split, sampled as the training crops are.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from yolo_cli.config import DEFAULTS
from yolo_cli.errors import YoloError


@dataclass
class WindowTrainConfig:
    """What ``yolo train --method window`` takes. ``data=None``: the synthetic street scenes
    (the set the YOLO default model trains on). ``batch=None``: the classifier's own default."""

    data: str | None = None
    out: str | None = None
    epochs: int = DEFAULTS.epochs
    batch: int | None = None
    lr: float = DEFAULTS.lr
    seed: int = DEFAULTS.seed
    crop: int = DEFAULTS.window_crop
    crops_per_image: int = DEFAULTS.window_crops_per_image
    synth_n: int = DEFAULTS.synth_scenes
    verbose: int = 0  # Keras fit: 0 silent, 2 one line per epoch


@dataclass
class CropAccuracy:
    """Classifier accuracy on held-out crops: all of them, object crops, background crops."""

    crops: int
    overall: float
    objects: float
    background: float


@dataclass
class WindowTrainResult:
    run_dir: Path
    train_images: int
    held_out: CropAccuracy | None  # None: the dataset has no val split


def crop_accuracy(model, crops: np.ndarray, labels: np.ndarray, background: int) -> CropAccuracy:
    """Accuracy of the classifier on ``crops (N, crop, crop, 3)`` uint8 with ``labels (N,)``
    (``background`` = the background label). NaN for a group without crops."""
    predicted = model.predict(crops.astype(np.float32), batch_size=DEFAULTS.window_batch, verbose=0)
    right = predicted.argmax(axis=-1) == labels
    is_bg = labels == background

    def mean(mask: np.ndarray) -> float:
        return float(right[mask].mean()) if mask.any() else float("nan")

    return CropAccuracy(len(labels), mean(np.ones_like(is_bg)), mean(~is_bg), mean(is_bg))


def _val_split(path) -> object | None:
    """The dataset's ``val`` split, or None when it has none (training goes on without a score)."""
    from yolo_cli.data.load import load_dataset

    try:
        return load_dataset(path, split="val")
    except YoloError:
        return None


def train_window(cfg: WindowTrainConfig) -> WindowTrainResult:
    """Train the crop classifier on ``cfg.data``'s train split; write the run folder (module doc).

    Raises :class:`YoloError` for an unusable dataset or a run folder that already holds a model.
    """
    from yolo_cli.data.synth import default_synthetic
    from yolo_cli.runs import run_folder

    path = cfg.data if cfg.data is not None else default_synthetic(n=cfg.synth_n)
    with run_folder(cfg.out, "train") as run_dir:
        return _train_window(cfg, path, run_dir)


def _train_window(cfg: WindowTrainConfig, path, run_dir: Path) -> WindowTrainResult:
    """:func:`train_window`'s work once its run folder ``run_dir`` is claimed."""
    from yolo_cli.baselines.classifier import sample_crops, train_classifier
    from yolo_cli.data.load import load_dataset
    from yolo_cli.modelfile import ModelMeta, save_model

    if (run_dir / "best.keras").exists():
        raise YoloError(f"{run_dir}: already holds a model; use another --out")
    train = load_dataset(path, split="train")
    scales = DEFAULTS.window_scales
    batch = {"batch": cfg.batch} if cfg.batch is not None else {}
    model = train_classifier(
        train,
        epochs=cfg.epochs,
        crop=cfg.crop,
        seed=cfg.seed,
        n_per_image=cfg.crops_per_image,
        scales=scales,
        lr=cfg.lr,
        verbose=cfg.verbose,
        **batch,
    )
    held_out = None
    val = _val_split(path)
    if val is not None:
        # a random stream of its own, so the val score does not hinge on training's draws
        val_crops, val_labels = sample_crops(
            val, cfg.crop, cfg.crops_per_image, np.random.default_rng(cfg.seed + 1), scales
        )
        if len(val_labels):
            held_out = crop_accuracy(model, val_crops, val_labels, len(train.names))
    extra = {
        "method": "window",
        "data": str(path),
        "epochs": cfg.epochs,
        "seed": cfg.seed,
        "scales": list(scales),
        "train_images": len(train),
        "val_accuracy": held_out.overall if held_out else None,
    }
    meta = ModelMeta("window", list(train.names), cfg.crop, extra=extra)
    save_model(model, run_dir / "last.keras", meta)
    save_model(model, run_dir / "best.keras", meta, include_optimizer=False)
    return WindowTrainResult(run_dir, len(train), held_out)
