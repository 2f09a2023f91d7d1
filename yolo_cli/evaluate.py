"""The use case behind ``yolo eval``: detections (from a model, an ensemble, or a predictions
file) scored against a dataset's ground truth, as a table, ``metrics.json`` and a
precision–recall plot.

A model whose classes differ from the dataset's is scored on the classes they share
(:mod:`yolo_cli.labelsets`). An image that cannot be read is skipped whole: its ground truth
leaves the evaluation with it, and the report counts it.

``metrics.json`` holds the scores (:meth:`yolo_cli.metrics.EvalResult.to_dict`) and what they
were measured on: ``command`` (the command line, when the CLI ran it), ``dataset`` and
``split``, ``dataset_sha256`` (:func:`dataset_fingerprint`), ``images`` scored and
``skipped_images``, ``source``, and ``models`` (``[{"path", "sha256"}]``, with ``augment``) or
``predictions`` (``{"path", "sha256"}``), and ``class_match`` where the model's classes are
not exactly the dataset's.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from yolo_cli import config
from yolo_cli.config import DEFAULTS, LIMITS
from yolo_cli.data.dataset import Dataset, Problems
from yolo_cli.errors import YoloError
from yolo_cli.fileio import write_atomic
from yolo_cli.labelsets import ClassMatch
from yolo_cli.metrics import COCO_IOU_THRESHOLDS, EvalResult, evaluate
from yolo_cli.plots import plot_pr_curves
from yolo_cli.postprocess import Detections

TASK = "eval"  # runs/eval/expN
SYNTH_TEST_SEED = 1  # the default model trains on seed 0; its test scenes are never seen
SYNTH_TEST_N = 300


@dataclass
class EvalOptions:
    """What ``yolo eval`` takes. model: one model file or short name, or several (an
    ensemble); None: the shipped :data:`yolo_cli.config.EVAL_MODEL`. box_vote: kept boxes
    voted (:func:`yolo_cli.postprocess.vote`). augment: test-time augmentation
    (:mod:`yolo_cli.ensemble`). class_map: ``MODEL=DATASET,…`` pairs (:mod:`yolo_cli.labelsets`).
    command: the command line, recorded in ``metrics.json``."""

    data: str | None = None
    split: str | None = "test"
    model: str | Sequence[str] | None = None
    method: str = DEFAULTS.method  # or window / conv-window (yolo_cli.baselines.detector)
    predictions: str | None = None
    iou: float = DEFAULTS.eval_iou
    conf: float = DEFAULTS.eval_conf
    nms_iou: float = DEFAULTS.nms_iou
    box_vote: bool = DEFAULTS.box_vote
    max_det: int = DEFAULTS.max_det
    batch: int = DEFAULTS.eval_batch
    device: str = DEFAULTS.device
    out: str | None = None
    augment: bool = False
    class_map: str | None = None
    command: str | None = None

    @property
    def models(self) -> list[str | None]:
        """``model`` as a list: ``[None]`` for the default model."""
        if self.model is None or isinstance(self.model, str | Path):
            return [self.model]
        return list(self.model) or [None]


@dataclass
class EvalReport:
    """Scores at ``--iou`` (``at_iou``) and COCO mAP@[.5:.95] (``coco``), where they went.

    images: images scored; skipped: images of the split that are missing or could not be read
    (left out with their ground truth). match: how the model's classes were matched to the dataset's (None for a
    predictions file, scored by class name).
    """

    dataset: Dataset
    at_iou: EvalResult
    coco: EvalResult
    source: str
    run_dir: Path
    problems: Problems
    images: int = 0
    skipped: int = 0
    match: ClassMatch | None = None
    metrics: dict = field(default_factory=dict)


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


@dataclass
class EvalModel:
    """The detector ``yolo eval`` runs (one model, an ensemble, with or without ``--augment``),
    the model files behind it, and how the report names it."""

    detector: object
    paths: list[Path]
    source: str


def open_eval_model(options: EvalOptions) -> EvalModel:
    """Load ``options.model`` (one or several, :mod:`yolo_cli.ensemble`) for ``options.method``."""
    from yolo_cli.device import select_device
    from yolo_cli.ensemble import MergedDetector, open_detectors
    from yolo_cli.inference import Thresholds
    from yolo_cli.modelfile import model_path

    paths = [model_path(m, options.method, default=config.EVAL_MODEL) for m in options.models]
    thresholds = Thresholds(options.conf, options.nms_iou, options.max_det, options.box_vote)
    device = select_device(options.device)
    detector = open_detectors(paths, options.method, thresholds, device, options.augment)
    source = " + ".join(str(p) for p in paths)
    if options.method != "yolo":
        source += f" ({options.method})"
    if isinstance(detector, MergedDetector):
        source += f"; {detector.describe()}"
    return EvalModel(detector, paths, source)


def model_detections(
    dataset: Dataset,
    detector,
    batch: int,
    progress: Callable[[int], AbstractContextManager | None] | None = None,
) -> tuple[list[Detections], list[int]]:
    """Run ``detector`` over every image of ``dataset``: one :class:`Detections` per image
    read, and those images' indices into ``dataset.samples``. An unreadable image is skipped
    and counted in ``dataset.problems`` (``unreadable-image``). progress: as in :func:`run_eval`.
    """
    from yolo_cli.data.image import read_image

    kept: list[int] = []
    detections: list[Detections] = []
    bar = progress(len(dataset)) if progress else None
    with bar or nullcontext() as ticks:

        def images():
            for i, sample in enumerate(dataset.samples):
                try:
                    image = read_image(sample.image)
                except YoloError as e:
                    reason = str(e).removeprefix(f"{sample.image}: ")
                    dataset.problems.add(
                        sample.image, "unreadable-image", f"{reason}; skipped with its ground truth"
                    )
                    if ticks is not None:
                        ticks.update(1)
                    continue
                kept.append(i)
                yield image

        for dets in detector.detect_stream(images(), batch):
            detections.append(dets)
            if ticks is not None:
                ticks.update(1)
    return detections, kept


def run_eval(
    options: EvalOptions,
    progress: Callable[[int], AbstractContextManager | None] | None = None,
) -> EvalReport:
    """Score a model (or saved predictions) on a dataset; writes metrics.json and pr_curve.png.

    progress: given the number of images to run the model on, returns a context manager whose
    ``update(n)`` is called as images are done (click's ``progressbar`` fits), or None.
    Raises :class:`YoloError` for options that do not fit together or are out of range, a run
    folder that cannot be made (before any work), a bad dataset, model or predictions file,
    and a model that shares no class with the dataset.
    """
    from yolo_cli.labelsets import parse_class_map
    from yolo_cli.runs import run_folder

    for option in ("iou", "conf", "nms_iou"):
        LIMITS.score.check("--" + option.replace("_", "-"), getattr(options, option))
    class_map = parse_class_map(options.class_map)
    if options.predictions and (class_map or options.augment or len(options.models) > 1):
        raise YoloError(
            "--class-map, --augment and several --model apply to a model, not to --predictions"
        )
    with run_folder(options.out, TASK) as run_dir:
        return _run_eval(options, class_map, run_dir, progress)


def _run_eval(options: EvalOptions, class_map, run_dir: Path, progress) -> EvalReport:
    """:func:`run_eval`'s work once its run folder ``run_dir`` is claimed."""
    from yolo_cli.labelsets import match_classes

    dataset = load_eval_dataset(options.data, options.split)
    metrics: dict = {"command": options.command}
    match = None
    if options.predictions:
        from yolo_cli.predictions import read_predictions

        detections, read_problems = read_predictions(options.predictions, dataset)
        dataset.problems.items.extend(read_problems.items)
        kept = list(range(len(dataset)))
        source = options.predictions
        metrics["predictions"] = _file_entry(options.predictions)
    else:
        model = open_eval_model(options)
        names = list(model.detector.meta.names)
        match = match_classes(names, dataset.names, class_map, model=model.source)
        found, kept = model_detections(dataset, model.detector, options.batch, progress)
        detections = [match.detections(d) for d in found]
        source = model.source
        metrics["models"] = [_file_entry(p) for p in model.paths]
        metrics["augment"] = options.augment
        metrics["box_vote"] = options.box_vote
    samples = [dataset.samples[i] for i in kept]
    skipped = dataset.dropped + len(dataset) - len(samples)
    truth = [(s.boxes, s.classes) for s in samples]
    names = dataset.names
    if match is not None and not match.identical:
        truth = [match.ground_truth(b, c) for b, c in truth]
        names = match.scored_names
    common = dict(num_classes=len(names), max_det=options.max_det, names=names)
    at_iou = evaluate(truth, detections, iou_thresholds=(options.iou,), **common)
    coco = evaluate(truth, detections, iou_thresholds=COCO_IOU_THRESHOLDS, **common)
    metrics |= {
        "dataset": str(dataset.root),
        "split": dataset.split,
        "dataset_sha256": dataset_fingerprint(dataset),
        "images": len(samples),
        "skipped_images": skipped,
        "source": source,
    }
    if match is not None and not match.identical:
        metrics["class_match"] = match.to_dict()
    metrics |= {**at_iou.to_dict(), "mAP@[0.5:0.95]": _finite_or_none(coco.map_all)}
    write_atomic(run_dir / "metrics.json", json.dumps(metrics, indent=1))
    plot_pr_curves(at_iou, run_dir / "pr_curve.png")
    return EvalReport(
        dataset,
        at_iou,
        coco,
        source,
        run_dir,
        dataset.problems,
        images=len(samples),
        skipped=skipped,
        match=match,
        metrics=metrics,
    )


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of a file's bytes, hex; of a folder (a SavedModel, YOLO txt predictions),
    of each file's path inside it and bytes, in sorted order."""
    path = Path(path)
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    digest = hashlib.sha256()
    for file in files:
        if file != path:
            digest.update(file.relative_to(path).as_posix().encode() + b"\0")
        with open(file, "rb") as f:
            for block in iter(lambda f=f: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def _file_entry(path: str | Path) -> dict:
    return {"path": str(path), "sha256": file_sha256(path)}


def dataset_fingerprint(dataset: Dataset) -> str:
    """A SHA-256 (hex) that changes when the images or labels scored change, not when the
    dataset moves.

    Hashed: the class names in order, then per image, sorted by file name: the file name (not
    its folder), its size in bytes (-1 if unreadable), width and height, and its boxes (xyxy
    pixels to 0.001 px, with class names) in label order; as compact JSON (UTF-8).
    """
    images = []
    for s in sorted(dataset.samples, key=lambda s: (Path(s.image).name, str(s.image))):
        try:
            size = Path(s.image).stat().st_size
        except OSError:
            size = -1
        boxes = [
            [dataset.names[int(c)], *(round(float(v), 3) for v in box)]
            for box, c in zip(s.boxes, s.classes, strict=True)
        ]
        images.append([Path(s.image).name, size, int(s.width), int(s.height), boxes])
    text = json.dumps({"names": list(dataset.names), "images": images}, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _finite_or_none(x: float):
    return float(x) if np.isfinite(x) else None


def format_report(report: EvalReport) -> str:
    """The printed table: per class AP@iou, P/R/F1 at best F1, ground truths; then overall,
    the images scored and skipped, and which classes were scored when the model's differ."""
    r = report.at_iou
    iou = float(r.iou_thresholds[0])
    head = f"{'class':<14} {'gt':>6} {'AP@' + format(iou, 'g'):>8} {'P':>6} {'R':>6} {'F1':>6} {'conf':>6}"
    lines = [head, "-" * len(head)]

    def cell(x: float) -> str:
        return f"{x:.3f}" if np.isfinite(x) else "-"

    for k, name in enumerate(r.names):
        lines.append(
            f"{name:<14} {int(r.n_gt[k]):>6} {cell(r.ap[k, 0]):>8} "
            f"{cell(r.precision[k]):>6} {cell(r.recall[k]):>6} {cell(r.f1[k]):>6} "
            f"{cell(r.score_threshold[k]):>6}"
        )
    lines.append("-" * len(head))
    images = f"{report.images} images"
    if report.skipped:
        images += f", {report.skipped} skipped (unreadable)"
    lines.append(
        f"{'all':<14} {int(r.n_gt.sum()):>6} {cell(r.map):>8}   "
        f"mAP@[.5:.95] {cell(report.coco.map_all)}   ({images}; P, R, F1 at the"
        " conf of best F1)"
    )
    if report.match is not None:
        lines += report.match.lines()
    return "\n".join(lines)
