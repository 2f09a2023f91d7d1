"""The use case behind ``yolo bench``: the course's argument for YOLO, measured.

Three detectors run on the same test images, one image at a time: the naive sliding window
(every crop classified on its own), its convolutional implementation (the same classifier,
dense layers as convolutions, one pass per pyramid level) and YOLO. Each runs twice:

- a scoring pass at ``score_conf`` (low, as ``yolo eval``: mAP needs the whole ranking) gives
  mAP at ``iou`` and the mean IoU of the true positives at each class's best-F1 confidence
  (how tight the boxes a user would keep are);
- a timed pass at ``conf`` (``yolo detect``'s score threshold) gives the median milliseconds per
  image, images per second over the pass and the speed-up over the naive sliding window. The
  threshold matters for the window methods: at 0.001 nearly every one of their thousands of
  windows goes into NMS, which would time NMS rather than detection.

The work per image is counted, not timed: windows (YOLO: grid cells × anchors) and
multiply-adds. The two window methods must give the same detections in both passes;
:func:`run_bench` checks it image by image.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from yolo_cli import config
from yolo_cli.config import DEFAULTS
from yolo_cli.data.dataset import Dataset
from yolo_cli.errors import YoloError
from yolo_cli.postprocess import Detections

# window vs conv-window: the same windows, so the same boxes; scores differ by float rounding
AGREE_BOX_ATOL = 1e-3
AGREE_SCORE_ATOL = 1e-4


@dataclass
class BenchOptions:
    """What ``yolo bench`` takes. ``data=None``: the synthetic test scenes ``yolo eval`` uses;
    ``yolo_model=None``: :data:`yolo_cli.config.EVAL_MODEL`; ``window_model`` is required.
    ``score_conf``: score threshold of the scoring pass; ``conf``: of the timed pass."""

    data: str | None = None
    split: str | None = "test"
    yolo_model: str | None = None
    window_model: str | None = None
    n_images: int = DEFAULTS.bench_images
    iou: float = DEFAULTS.eval_iou
    score_conf: float = DEFAULTS.eval_conf
    conf: float = DEFAULTS.conf_threshold
    nms_iou: float = DEFAULTS.nms_iou
    max_det: int = DEFAULTS.max_det
    device: str = DEFAULTS.device


@dataclass
class MethodRun:
    """One method's passes: ``scored`` (scoring pass) and ``kept`` (timed pass) detections per
    image, ``seconds (N,)`` of the timed pass; windows, macs: per image, averaged."""

    method: str
    model: str
    scored: list[Detections]
    kept: list[Detections]
    seconds: np.ndarray
    windows: float
    macs: float
    map: float
    tp_iou: float

    @property
    def median_ms(self) -> float:
        return float(np.median(self.seconds) * 1000)

    @property
    def images_per_s(self) -> float:
        return len(self.seconds) / float(np.sum(self.seconds))


@dataclass
class BenchReport:
    dataset: Dataset  # the images benchmarked (the first ``n_images`` readable ones)
    runs: list[MethodRun]  # window, conv-window, yolo
    agree: int  # images on which window and conv-window gave the same detections, both passes
    device: str
    options: BenchOptions


def true_positive_ious(
    truth, detections, min_scores: np.ndarray, iou_threshold: float = DEFAULTS.eval_iou
) -> np.ndarray:
    """IoU of every true positive among the detections scoring at least ``min_scores[class]``.

    truth: per image ``(boxes (G, 4) xyxy pixels, classes (G,))``; detections: per image
    :class:`Detections` (sorted by score); min_scores: ``(C,)``, NaN = no detection of that
    class counts. Matching is COCO's greedy one, per image and class: by descending score,
    each detection takes the unmatched ground truth it overlaps most, if IoU ≥ ``iou_threshold``.
    Returns ``(T,)`` float32 IoUs.
    """
    from yolo_cli.boxes import iou

    found = []
    for (gt_boxes, gt_classes), dets in zip(truth, detections, strict=True):
        for k in np.unique(dets.classes):
            kept = dets.take((dets.classes == k) & (dets.scores >= min_scores[k]))
            gt = np.asarray(gt_boxes)[np.asarray(gt_classes) == k]
            if not len(kept) or not len(gt):
                continue
            free = np.ones(len(gt), bool)
            for row in iou(kept.boxes, gt):
                candidates = np.where(free, row, -1.0)
                j = int(candidates.argmax())
                if candidates[j] >= iou_threshold:
                    free[j] = False
                    found.append(candidates[j])
    return np.array(found, np.float32)


def detections_agree(a: Detections, b: Detections) -> bool:
    """Same boxes (within :data:`AGREE_BOX_ATOL` px), classes and order, scores within
    :data:`AGREE_SCORE_ATOL`."""
    return (
        len(a) == len(b)
        and np.array_equal(a.classes, b.classes)
        and np.allclose(a.boxes, b.boxes, rtol=0, atol=AGREE_BOX_ATOL)
        and np.allclose(a.scores, b.scores, rtol=0, atol=AGREE_SCORE_ATOL)
    )


def yolo_cost(detector) -> tuple[int, int]:
    """``(grid cells × anchors over every head, multiply-adds)`` of one YOLO forward pass (any
    image size: every image is resized to the model's input)."""
    size = detector.meta.img_size
    cells = sum(h.grid(size) ** 2 * len(h.anchors) for h in detector.meta.heads)
    macs = detector.macs
    return cells, float("nan") if macs is None else macs


def _read_images(dataset: Dataset, n: int) -> tuple[Dataset, list[np.ndarray]]:
    """The first ``n`` readable images of ``dataset`` and the dataset cut to them."""
    from yolo_cli.data.image import read_image

    samples, images = [], []
    for sample in dataset.samples:
        if len(images) == n:
            break
        try:
            images.append(read_image(sample.image))
        except YoloError as e:
            dataset.problems.add(sample.image, "unreadable-image", str(e))
            continue
        samples.append(sample)
    if not images:
        raise YoloError(f"{dataset.root}: no readable images to benchmark")
    cut = Dataset(dataset.names, samples, dataset.format, dataset.root, dataset.split)
    cut.problems = dataset.problems
    return cut, images


def _check_model(path: str, kind: str, option: str, dataset: Dataset) -> None:
    """Before any image is run: the model file exists, is of ``kind`` and has the dataset's
    classes (the naive sliding window takes minutes; a bad YOLO path must not wait for it)."""
    from yolo_cli.modelfile import read_meta

    meta = read_meta(path)
    if meta.kind != kind:
        raise YoloError(f"{path}: a {meta.kind!r} model; {option} takes a {kind!r} model")
    if meta.names != dataset.names:
        raise YoloError(
            f"{path}: model classes {meta.names} differ from the dataset's {dataset.names}"
        )


def _run(method: str, path: str, images, dataset: Dataset, options, device) -> MethodRun:
    """Both passes of one method (module doc); the timed one after an untimed warm-up."""
    from yolo_cli.baselines.detector import open_detector
    from yolo_cli.inference import Thresholds
    from yolo_cli.metrics import evaluate

    def detector(conf: float):
        return open_detector(
            method, path, Thresholds(conf, options.nms_iou, options.max_det), device
        )

    scoring = detector(options.score_conf)
    scored = scoring.detect(images)
    timed = detector(options.conf)
    timed.detect(images[:1])  # traces YOLO's function and the classifier's predict function
    kept, seconds = [], []
    for image in images:
        start = time.perf_counter()
        kept.extend(timed.detect([image]))
        seconds.append(time.perf_counter() - start)
    truth = [(s.boxes, s.classes) for s in dataset.samples]
    result = evaluate(
        truth,
        scored,
        len(dataset.names),
        iou_thresholds=(options.iou,),
        max_det=options.max_det,
        names=dataset.names,
    )
    ious = true_positive_ious(truth, scored, result.score_threshold, options.iou)
    if method == "yolo":
        windows, macs = yolo_cost(timed)
    else:
        costs = np.array([timed.cost(*image.shape[:2]) for image in images], np.float64)
        windows, macs = costs.mean(axis=0)
    return MethodRun(
        method,
        path,
        scored,
        kept,
        np.array(seconds),
        float(windows),
        float(macs),
        result.map,
        float(ious.mean()) if len(ious) else float("nan"),
    )


def run_bench(options: BenchOptions) -> BenchReport:
    """Run window, conv-window and YOLO on the same images; raises :class:`YoloError` for a
    missing model, a model of the wrong kind, or classes that differ from the dataset's."""
    from yolo_cli.device import select_device
    from yolo_cli.evaluate import load_eval_dataset
    from yolo_cli.modelfile import model_path

    if options.window_model is None:
        raise YoloError(
            "--window-model: needed; train one with `yolo train --method window` "
            "and pass its best.keras"
        )
    yolo_path = str(model_path(options.yolo_model, default=config.EVAL_MODEL))
    dataset, images = _read_images(load_eval_dataset(options.data, options.split), options.n_images)
    _check_model(options.window_model, "window", "--window-model", dataset)
    _check_model(yolo_path, "yolo", "--yolo-model", dataset)
    device = select_device(options.device)
    runs = [
        _run(method, path, images, dataset, options, device)
        for method, path in (
            ("window", options.window_model),
            ("conv-window", options.window_model),
            ("yolo", yolo_path),
        )
    ]
    naive, conv = runs[0], runs[1]
    agree = sum(
        detections_agree(*scored) and detections_agree(*kept)
        for scored, kept in zip(
            zip(naive.scored, conv.scored), zip(naive.kept, conv.kept), strict=True
        )
    )
    return BenchReport(dataset, runs, agree, device.name, options)


def _si(x: float) -> str:
    """1234567 → ``1.23 M``; NaN (not known) → ``–``."""
    if not np.isfinite(x):
        return "–"
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if x >= size:
            return f"{x / size:.3g} {unit}"
    return f"{x:.3g}"


def format_bench(report: BenchReport) -> str:
    """The table (markdown, so it pastes into benchmarks/README.md) and the agreement line."""
    ds = report.dataset
    sizes = sorted({(s.width, s.height) for s in ds.samples})
    size = f"{sizes[0][0]}×{sizes[0][1]}" if len(sizes) == 1 else f"{len(sizes)} sizes"
    naive = report.runs[0].median_ms
    o = report.options

    def cell(x: float, fmt: str) -> str:
        return format(x, fmt) if np.isfinite(x) else "-"

    lines = [
        f"{len(ds)} images of {ds.root} ({ds.split or 'all'}, {size}), one at a time on "
        f"{report.device}",
        "",
        f"| method | mAP@{o.iou:g} | TP IoU | ms/image (median) | images/s | speed-up | "
        "windows/image | multiply-adds/image |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for run in report.runs:
        lines.append(
            f"| {run.method} | {cell(run.map, '.3f')} | {cell(run.tp_iou, '.3f')} | "
            f"{run.median_ms:.1f} | {run.images_per_s:.2f} | {naive / run.median_ms:.1f}× | "
            f"{run.windows:,.0f} | {_si(run.macs)} |"
        )
    differ = len(ds) - report.agree
    agreement = f"agree on all {len(ds)} images" if not differ else f"DIFFER on {differ} images"
    lines += [
        "",
        f"window and conv-window detections {agreement}",
        f"mAP and TP IoU (mean IoU of true positives at each class's best-F1 confidence) from "
        f"detections with score > {o.score_conf:g}; times at score > {o.conf:g}; "
        "windows/image for yolo: grid cells × anchors",
        f"models: window {report.runs[0].model}, yolo {report.runs[2].model}",
    ]
    return "\n".join(lines)
