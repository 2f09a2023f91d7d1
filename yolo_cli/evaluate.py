"""The use case behind ``yolo eval``: detections (from a model or a predictions file) scored
against a dataset's ground truth, as a table, ``metrics.json`` and a precision–recall plot."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from yolo_cli.config import DEFAULTS
from yolo_cli.data.dataset import Dataset, Problems
from yolo_cli.errors import YoloError
from yolo_cli.metrics import COCO_IOU_THRESHOLDS, EvalResult, evaluate
from yolo_cli.plots import plot_pr_curves
from yolo_cli.postprocess import Detections

SYNTH_TEST_SEED = 1  # the default model trains on seed 0; its test scenes are never seen
SYNTH_TEST_N = 300


@dataclass
class EvalOptions:
    data: str | None = None
    split: str | None = "test"
    model: str | None = None
    method: str = "yolo"  # or window / conv-window (yolo_cli.baselines.detector)
    predictions: str | None = None
    iou: float = DEFAULTS.eval_iou
    conf: float = DEFAULTS.eval_conf
    nms_iou: float = DEFAULTS.nms_iou
    max_det: int = DEFAULTS.max_det
    batch: int = 8
    device: str = "auto"
    out: str | None = None


@dataclass
class EvalReport:
    """Scores at ``--iou`` (``at_iou``) and COCO mAP@[.5:.95] (``coco``), where they went."""

    dataset: Dataset
    at_iou: EvalResult
    coco: EvalResult
    source: str
    run_dir: Path
    problems: Problems


def load_eval_dataset(data: str | None, split: str | None) -> Dataset:
    """The dataset to score on: ``data``'s split (``all`` or None: every image), or fresh
    synthetic test scenes (all of them).

    A dataset with no split of its own (a single COCO file, a flat folder of images and
    labels) is scored whole whatever ``split`` says: a labelled set brought to be scored is
    all test. Doing so logs one INFO line on this module's logger (the CLI prints it).
    """
    import logging

    from yolo_cli.config import SPLIT_ALL
    from yolo_cli.data.load import load_dataset
    from yolo_cli.data.synth import default_synthetic

    if data is None:
        return load_dataset(default_synthetic(n=SYNTH_TEST_N, seed=SYNTH_TEST_SEED))
    dataset = load_dataset(data, split=split, whole_if_unsplit=True)
    if split not in (None, SPLIT_ALL) and dataset.split is None:
        logging.getLogger(__name__).info(
            "%s: no train/val/test split of its own; scoring all %d images", data, len(dataset)
        )
    return dataset


def model_detections(dataset: Dataset, options: EvalOptions) -> tuple[list[Detections], str]:
    """Run the model (``options.method``) over every image of ``dataset`` (unreadable images:
    no detections)."""
    from yolo_cli.baselines.detector import open_detector
    from yolo_cli.data.image import read_image
    from yolo_cli.detect import model_path
    from yolo_cli.device import select_device
    from yolo_cli.inference import Thresholds

    path = model_path(options.model, options.method)
    thresholds = Thresholds(options.conf, options.nms_iou, options.max_det)
    detector = open_detector(options.method, path, thresholds, select_device(options.device))
    if detector.meta.names != dataset.names:
        raise YoloError(
            f"{path}: model classes {detector.meta.names} differ from the dataset's {dataset.names}"
        )

    def images():
        for sample in dataset.samples:
            try:
                yield read_image(sample.image)
            except YoloError as e:
                dataset.problems.add(sample.image, "unreadable-image", str(e))
                yield np.zeros((sample.height, sample.width, 3), np.uint8)

    source = str(path) if options.method == "yolo" else f"{path} ({options.method})"
    return list(detector.detect_stream(images(), options.batch)), source


def run_eval(options: EvalOptions) -> EvalReport:
    """Score a model (or saved predictions) on a dataset; writes metrics.json and pr_curve.png."""
    from yolo_cli.runs import next_run_dir

    dataset = load_eval_dataset(options.data, options.split)
    if options.predictions:
        from yolo_cli.predictions import read_predictions

        detections, read_problems = read_predictions(options.predictions, dataset)
        dataset.problems.items.extend(read_problems.items)
        source = options.predictions
    else:
        detections, source = model_detections(dataset, options)
    problems = dataset.problems
    truth = [(s.boxes, s.classes) for s in dataset.samples]
    common = dict(num_classes=len(dataset.names), max_det=options.max_det, names=dataset.names)
    at_iou = evaluate(truth, detections, iou_thresholds=(options.iou,), **common)
    coco = evaluate(truth, detections, iou_thresholds=COCO_IOU_THRESHOLDS, **common)
    run_dir = Path(options.out) if options.out else next_run_dir("runs/eval")
    run_dir.mkdir(parents=True, exist_ok=True)
    report = EvalReport(dataset, at_iou, coco, source, run_dir, problems)
    metrics = {
        "dataset": str(dataset.root),
        "split": dataset.split,
        "images": len(dataset),
        "source": source,
        **at_iou.to_dict(),
        "mAP@[0.5:0.95]": _finite_or_none(coco.map_all),
    }
    tmp = run_dir / ".metrics.json.tmp"
    tmp.write_text(json.dumps(metrics, indent=1))
    os.replace(tmp, run_dir / "metrics.json")
    plot_pr_curves(at_iou, run_dir / "pr_curve.png")
    return report


def _finite_or_none(x: float):
    return float(x) if np.isfinite(x) else None


def format_report(report: EvalReport) -> str:
    """The printed table: per class AP@iou, P/R/F1 at best F1, ground truths; then overall."""
    r = report.at_iou
    iou = float(r.iou_thresholds[0])
    head = f"{'class':<14} {'gt':>6} {'AP@' + format(iou, 'g'):>8} {'P':>6} {'R':>6} {'F1':>6} {'conf':>6}"
    lines = [head, "-" * len(head)]

    def cell(x: float) -> str:
        return f"{x:.3f}" if np.isfinite(x) else "-"

    n_images = len(report.dataset)
    for k, name in enumerate(r.names):
        lines.append(
            f"{name:<14} {int(r.n_gt[k]):>6} {cell(r.ap[k, 0]):>8} "
            f"{cell(r.precision[k]):>6} {cell(r.recall[k]):>6} {cell(r.f1[k]):>6} "
            f"{cell(r.score_threshold[k]):>6}"
        )
    lines.append("-" * len(head))
    lines.append(
        f"{'all':<14} {int(r.n_gt.sum()):>6} {cell(r.map):>8}   "
        f"mAP@[.5:.95] {cell(report.coco.map_all)}   ({n_images} images; P, R, F1 at the"
        " conf of best F1)"
    )
    return "\n".join(lines)
