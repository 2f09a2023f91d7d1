"""How fast is ``yolo detect``, where does its time go, how much memory does it hold, and is
our metric computation faster than pycocotools'?

    .venv/bin/python benchmarks/bench_detect.py [--model models/default.keras] [--quick] [--images 1000]

Four tables, every number measured in this one run:

1. End to end: images/s of :func:`yolo_cli.detect.run_detect` (the library call behind
   ``yolo detect``, in this process; model loading and tracing excluded, as in the images/s of
   its summary line) at the default threshold, writing annotated images and YOLO txt, on the
   BCCD test split's JPEGs (640 × 480) and on synthetic street scenes. Then the time per image
   of each stage, measured from the outside by running the same library calls separately on
   the same images in the same batches: read + decode (``read_image``), preprocess
   (``letterbox_image`` + stacking to float32), model and post-process (the Detector's
   ``tf.function`` split in two: the Keras model alone, then decode + score threshold + NMS on
   its output; the unsplit graph is timed too, for comparison), write (``draw_detections`` and
   the run's writer: JPEG + txt). "Unaccounted" is end to end minus the stages: the loop,
   batching, undoing the letterbox, the summary.
2. The model's multiply-adds per image (:func:`yolo_cli.summary.total_macs`: convolutions
   only) as achieved GFLOP/s at the model stage's rate (2 FLOPs per multiply-add), next to a
   large float32 ``tf.linalg.matmul`` on this machine (median of repeats), its practical peak.
3. :func:`yolo_cli.metrics.evaluate` at the COCO thresholds against pycocotools' COCOeval
   ``evaluate()`` + ``accumulate()`` (its index building and ``loadRes`` not counted) on the
   same detections on the BCCD test split: the model's at conf 0.001 when its classes are
   BCCD's, else perturbed ground truth (jittered, duplicated, mislabelled and missed boxes plus
   low-scored background boxes, as a detector at conf 0.001 gives). Medians of repeats, with
   both sides' mAPs to show they agree.
4. Resident memory of a separate detect process (``run_detect`` in a subprocess of this
   script) over a folder of ``--images`` distinct synthetic 416 px scenes (written with
   ``write_synthetic``), VmRSS sampled every tenth of the folder, the peak (VmHWM) at the
   end, and the growth per image from the first sample after the start on. Goal: at most
   1.5 GiB, flat.

Throughput and stage times are the best of repeats: the CPU is shared, and the best run is the
one least disturbed. ``--quick`` runs a few images of each for a smoke test.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

MEMORY_GOAL_GIB = 1.5
MEMORY_SAMPLES = 10
STAGES = ("read + decode", "preprocess", "model", "post-process", "write")
FUSED = "model + post-process as one graph (Detector.raw)"


@dataclass(frozen=True)
class Sizes:
    """How much of everything one run measures."""

    bccd_images: int  # of the 72 in the test split
    synth_images: int
    repeats: int  # end-to-end and stage timings (best of)
    matmul_n: int
    matmul_repeats: int
    metric_repeats: int
    memory_images: int


FULL = Sizes(72, 100, 3, 2048, 7, 5, 1000)
QUICK = Sizes(6, 6, 1, 512, 3, 2, 48)


# --- timing helpers --------------------------------------------------------------------------


def batches(items: Sequence, size: int) -> list[Sequence]:
    """``items`` in consecutive groups of ``size`` (the last fewer), as ``run_detect`` batches."""
    return [items[i : i + size] for i in range(0, len(items), size)]


def seconds(run: Callable[[], object]) -> float:
    """Wall-clock seconds of one ``run()``."""
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


# --- 1. end to end and by stage --------------------------------------------------------------


def end_to_end(sources: list[str], model: Path, out: Path, repeats: int) -> tuple[float, str]:
    """Best images/s of ``run_detect`` over ``sources`` (annotated images + txt written) and
    the summary line of that run."""
    from yolo_cli.detect import DetectOptions, run_detect

    options = DetectOptions(sources, model=str(model), out=str(out), save_txt=True)
    best, line = 0.0, ""
    for _ in range(repeats):
        summary = run_detect(options)
        rate = summary.processed / summary.seconds
        if rate > best:
            best, line = rate, summary.line()
    return best, line


def split_graph(detector) -> tuple[Callable, Callable]:
    """The Detector's ``tf.function`` cut in two, each placed on its device and returning numpy
    as ``Detector.raw`` does: the Keras model alone (``(N, size, size, 3)`` float32 → raw grid
    ``(N, S, S, B, 5 + C)``) and decode + score threshold + NMS with the Detector's thresholds
    (raw grid → padded boxes, scores, classes, count)."""
    import tensorflow as tf

    from yolo_cli.modelfile import model_outputs
    from yolo_cli.postprocess import decode, select

    meta, model, t = detector.meta, detector.model, detector.thresholds
    size = meta.img_size
    grids = [tf.TensorSpec((None, *o.shape[1:]), tf.float32) for o in model.outputs]

    @tf.function(input_signature=[tf.TensorSpec((None, size, size, 3), tf.float32)])
    def forward(images):
        return model_outputs(model, images)

    @tf.function(input_signature=[grids])
    def postprocess(raws):
        boxes, p_c, probs = decode(raws, meta.heads, size, meta.class_activation)
        return select(boxes, p_c, probs, t.conf, t.nms_iou, t.max_det)

    def model_only(batch: np.ndarray) -> list[np.ndarray]:
        with detector.device.scope():
            return [o.numpy() for o in forward(tf.convert_to_tensor(batch, tf.float32))]

    def post_only(raws: list[np.ndarray]) -> tuple:
        with detector.device.scope():
            return tuple(o.numpy() for o in postprocess([tf.convert_to_tensor(r) for r in raws]))

    return model_only, post_only


def stage_seconds(detector, paths: list[Path], batch: int, out: Path, repeats: int) -> dict:
    """Seconds per image of each of :data:`STAGES`, and of :data:`FUSED` (the Detector's own
    one-graph model + post-process, for comparison), best of ``repeats``, on ``paths``.

    Each stage runs the library's own calls over all images, batched as ``run_detect`` does.
    """
    from yolo_cli.boxes import letterbox_image
    from yolo_cli.data.image import read_image
    from yolo_cli.sources import IMAGE, Frame, Source
    from yolo_cli.writers import RunWriter

    size, names = detector.meta.img_size, detector.meta.names
    model_only, post_only = split_graph(detector)
    writers = RunWriter(out, names, save_txt=True)
    frames = [Frame(Source(str(p), IMAGE, p.stem, p.suffix), None) for p in paths]

    def read() -> None:
        for f in frames:
            f.image = read_image(f.source.location)

    def letterbox() -> list[np.ndarray]:
        return [
            np.stack([letterbox_image(f.image, size)[0] for f in group]).astype(np.float32)
            for group in batches(frames, batch)
        ]

    read()
    inputs = letterbox()
    raws = [model_only(x) for x in inputs]  # also traces; the other graphs trace below
    post_only(raws[0])
    detector.raw(inputs[0])
    detections = [
        d for group in batches(frames, batch) for d in detector.detect([f.image for f in group])
    ]

    def write() -> None:
        for f, d in zip(frames, detections, strict=True):
            writers.write(f, d)  # draws, then writes

    runs = {
        "read + decode": read,
        "preprocess": letterbox,
        "model": lambda: [model_only(x) for x in inputs],
        "post-process": lambda: [post_only(r) for r in raws],
        "write": write,
        FUSED: lambda: [detector.raw(x) for x in inputs],
    }
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(repeats):  # stages take turns, so a busy spell slows them alike
        for name, run in runs.items():
            best[name] = min(best[name], seconds(run))
    return {name: t / len(paths) for name, t in best.items()}


def detect_benchmark(
    name: str, paths: list[Path], detector, model: Path, tmp: Path, sizes: Sizes
) -> dict:
    """One row of table 1: end-to-end images/s and the stage times, on ``paths``."""
    from yolo_cli.config import DEFAULTS
    from yolo_cli.data.image import header_size

    slug = name.split()[0].lower()
    rate, line = end_to_end([str(p) for p in paths], model, tmp / f"e2e-{slug}", sizes.repeats)
    stages = stage_seconds(detector, paths, DEFAULTS.batch, tmp / f"stages-{slug}", sizes.repeats)
    print(f"  {name}: {line}", file=sys.stderr)
    return dict(name=name, images=len(paths), rate=rate, stages=stages, shape=header_size(paths[0]))


# --- 2. arithmetic rate ----------------------------------------------------------------------


def matmul_gflops(n: int, repeats: int) -> float:
    """GFLOP/s of an ``n × n`` float32 ``tf.linalg.matmul`` (2n³ FLOPs), median of repeats."""
    import tensorflow as tf

    a = tf.random.normal((n, n), seed=0)
    b = tf.random.normal((n, n), seed=1)

    @tf.function
    def product():
        return tf.reduce_sum(tf.linalg.matmul(a, b))  # a scalar out: no copy of the product

    product()
    times = [seconds(lambda: product().numpy()) for _ in range(repeats)]
    return 2 * n**3 / statistics.median(times) / 1e9


# --- 3. metrics against pycocotools ----------------------------------------------------------


def perturbed_detections(dataset, rng: np.random.Generator) -> list:
    """Detections a plausible detector at conf 0.001 makes on ``dataset``'s ground truth.

    Per true box: missed with probability 0.1, else found 1 + Poisson(1.5) times, each copy
    jittered by ~8 % of the box size, 5 % of copies with a random class, scores ~ Beta(5, 2);
    per image: Poisson(30) background boxes of 10–150 px scored ~ Beta(1, 8). Boxes are
    clipped to the image, xyxy pixels; returns one Detections per sample, sorted by score.
    """
    from yolo_cli.boxes import clip
    from yolo_cli.postprocess import Detections

    n_classes = len(dataset.names)
    out = []
    for s in dataset.samples:
        found = rng.random(len(s.boxes)) >= 0.1
        copies = 1 + rng.poisson(1.5, found.sum())
        boxes = np.repeat(s.boxes[found], copies, axis=0)
        classes = np.repeat(s.classes[found], copies)
        wh = np.tile(boxes[:, 2:] - boxes[:, :2], 2)
        boxes = boxes + rng.normal(0, 0.08, boxes.shape) * wh
        wrong = rng.random(len(classes)) < 0.05
        classes = np.where(wrong, rng.integers(0, n_classes, len(classes)), classes)
        n_bg = rng.poisson(30)
        corner = rng.uniform(0, [s.width, s.height], (n_bg, 2))
        background = np.concatenate([corner, corner + rng.uniform(10, 150, (n_bg, 2))], axis=1)
        boxes = clip(np.concatenate([boxes, background]).astype(np.float32), s.width, s.height)
        classes = np.concatenate([classes, rng.integers(0, n_classes, n_bg)]).astype(np.int32)
        scores = np.concatenate([rng.beta(5, 2, len(wh)), rng.beta(1, 8, n_bg)]).astype(np.float32)
        order = np.argsort(-scores, kind="stable")
        out.append(Detections(boxes[order], scores[order], classes[order]))
    return out


def metrics_benchmark(dataset, detections: list, repeats: int) -> dict:
    """Median seconds of our COCO-style evaluation and of pycocotools' on the same detections,
    and each side's mAP@[.5:.95] and mAP@.5."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    from yolo_cli.data.coco import instances
    from yolo_cli.metrics import COCO_IOU_THRESHOLDS, evaluate
    from yolo_cli.predictions import to_coco_results

    truth = [(s.boxes, s.classes) for s in dataset.samples]
    n_classes = len(dataset.names)

    def ours():
        return evaluate(truth, detections, n_classes, COCO_IOU_THRESHOLDS, "coco", 100)

    # instances() numbers images and categories from 1, to_coco_results from 0
    ids = {s.image: s.image.stem for s in dataset.samples}
    results = [
        r | {"image_id": r["image_id"] + 1, "category_id": r["category_id"] + 1}
        for r in to_coco_results([s.image for s in dataset.samples], detections, dataset.names)
    ]
    quiet = contextlib.redirect_stdout(io.StringIO())
    with quiet:
        coco_gt = COCO()
        coco_gt.dataset = instances(dataset.samples, dataset.names, ids)
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(results)

    def theirs() -> COCOeval:
        with contextlib.redirect_stdout(io.StringIO()):
            evaluation = COCOeval(coco_gt, coco_dt, "bbox")
            evaluation.evaluate()
            evaluation.accumulate()
        return evaluation

    result, evaluation = ours(), theirs()  # warm-up, and the values to compare
    with contextlib.redirect_stdout(io.StringIO()):
        evaluation.summarize()
    ours_s, theirs_s = [], []
    for _ in range(repeats):
        ours_s.append(seconds(ours))
        theirs_s.append(seconds(theirs))
    return dict(
        images=len(dataset),
        gt=sum(len(s.boxes) for s in dataset.samples),
        detections=sum(len(d) for d in detections),
        ours=statistics.median(ours_s),
        theirs=statistics.median(theirs_s),
        ours_map=(result.map_all, result.map),
        theirs_map=tuple(evaluation.stats[:2]),
    )


def bccd_detections(dataset, detector) -> tuple[list, str]:
    """Detections to score on BCCD: the model's at conf 0.001 if it knows BCCD's classes, else
    :func:`perturbed_detections`; and a phrase saying which."""
    from yolo_cli.config import DEFAULTS
    from yolo_cli.data.image import read_image
    from yolo_cli.inference import Detector, Thresholds

    if detector.meta.names == dataset.names:
        thresholds = Thresholds(DEFAULTS.eval_conf, DEFAULTS.nms_iou, DEFAULTS.max_det)
        low = Detector(detector.model, detector.meta, thresholds, detector.device)
        images = (read_image(s.image) for s in dataset.samples)
        found = list(low.detect_stream(images, DEFAULTS.batch))
        return found, f"the model's, conf {DEFAULTS.eval_conf:g}"
    detections = perturbed_detections(dataset, np.random.default_rng(0))
    return detections, f"perturbed ground truth (model classes {detector.meta.names} ≠ BCCD's)"


# --- 4. memory of a detect process -----------------------------------------------------------


def status_kib(field: str) -> int:
    """A ``kB`` line of ``/proc/self/status`` (``VmRSS``, ``VmHWM``)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


class RssSampler:
    """A ``run_detect`` progress display that records ``(images done, VmRSS KiB)`` as the run
    crosses every ``every`` images, and once before the first image (model loaded)."""

    def __init__(self, every: int):
        self.every = every
        self.done = 0
        self.samples: list[tuple[int, int]] = []

    def __call__(self, total: int) -> RssSampler:
        self.samples.append((0, status_kib("VmRSS")))
        return self

    def __enter__(self) -> RssSampler:
        return self

    def __exit__(self, *exc) -> None:
        return None

    def update(self, n: int) -> None:
        before, self.done = self.done, self.done + n
        if self.done // self.every > before // self.every:
            self.samples.append((self.done, status_kib("VmRSS")))


def memory_child(folder: str, model: str, out: str, every: int) -> None:
    """In the subprocess: detect on ``folder``, print one JSON object with the samples."""
    from yolo_cli.detect import DetectOptions, run_detect

    sampler = RssSampler(every)
    summary = run_detect(
        DetectOptions([folder], model=model, out=out, save_txt=True), progress=sampler
    )
    print(
        json.dumps(
            dict(
                samples=sampler.samples,
                images=summary.processed,
                rate=summary.processed / summary.seconds,
                # not getrusage's ru_maxrss: it survives fork + exec, so in a child of this
                # script (TensorFlow loaded) it can report the parent's size instead
                vm_hwm_kib=status_kib("VmHWM"),
            )
        )
    )


def memory_benchmark(model: Path, n: int, tmp: Path) -> dict:
    """Write ``n`` synthetic scenes (default size) and run :func:`memory_child` on them."""
    from yolo_cli.data.synth import write_synthetic

    folder = write_synthetic(tmp / "memory", n, seed=2) / "images"
    every = max(n // MEMORY_SAMPLES, 1)
    command = [sys.executable, __file__, "--memory-child", str(folder), "--model", str(model)]
    command += ["--out", str(tmp / "memory-out"), "--every", str(every)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"the memory subprocess failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def growth_kib_per_image(samples: list[tuple[int, int]]) -> float:
    """Least-squares slope of RSS over images done, from the first sample after the start on
    (the first batches warm up the allocator and the graph); NaN with fewer than two samples."""
    points = samples[1:]
    if len(points) < 2:
        return float("nan")
    x, y = np.array(points, np.float64).T
    return float(np.polyfit(x, y, 1)[0])


# --- output ----------------------------------------------------------------------------------


def print_detect_tables(rows: list[dict], repeats: int) -> None:
    from yolo_cli.config import DEFAULTS

    print(f"End to end, `run_detect` in this process (conf {DEFAULTS.conf_threshold}, batch "
          f"{DEFAULTS.batch}, annotated images + YOLO txt written), best of {repeats}:")  # fmt: skip
    print()
    print("| data | images | size | images/s | ms/image |")
    print("| --- | ---: | --- | ---: | ---: |")
    for r in rows:
        (w, h), rate = r["shape"], r["rate"]
        print(f"| {r['name']} | {r['images']} | {w}×{h} | {rate:.1f} | {1e3 / rate:.1f} |")
    print()
    print("Time per image by stage, the same library calls run separately, best of "
          f"{repeats} (ms/image, share of end to end):")  # fmt: skip
    print()
    print("| stage | " + " | ".join(f"{r['name']} | share" for r in rows) + " |")
    print("| --- |" + " ---: | ---: |" * len(rows))

    def row(label: str, seconds_of: Callable[[dict], float], share: bool = True) -> None:
        cells = []
        for r in rows:
            t = seconds_of(r)
            cells.append(f"{1e3 * t:.2f} | " + (f"{t * r['rate']:.0%}" if share else ""))
        print(f"| {label} | " + " | ".join(cells) + " |")

    def total(r: dict) -> float:
        return sum(r["stages"][stage] for stage in STAGES)

    for stage in STAGES:
        row(stage, lambda r, stage=stage: r["stages"][stage])
    row("sum of stages", total)
    row("unaccounted (end to end − sum)", lambda r: 1 / r["rate"] - total(r), share=False)
    row("end to end", lambda r: 1 / r["rate"])
    row(f"for comparison: {FUSED}", lambda r: r["stages"][FUSED])


def print_rate_table(rows: list[dict], macs: int, img_size: int, peak: float, sizes: Sizes) -> None:
    print(f"Arithmetic rate: {macs / 1e9:.3f} G multiply-adds per {img_size}×{img_size} image "
          f"(convolutions); float32 matmul {sizes.matmul_n}×{sizes.matmul_n}, median of "
          f"{sizes.matmul_repeats}: {peak:.1f} GFLOP/s")  # fmt: skip
    print()
    print("| data | model stage images/s | achieved GFLOP/s | matmul GFLOP/s | achieved / matmul |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for r in rows:
        rate = 1 / r["stages"]["model"]
        achieved = 2 * macs * rate / 1e9
        print(f"| {r['name']} | {rate:.1f} | {achieved:.1f} | {peak:.1f} | {achieved / peak:.0%} |")


def print_metrics_table(m: dict, source: str, repeats: int) -> None:
    print(f"Metrics on the BCCD test split at the COCO thresholds, detections: {source}; "
          f"median of {repeats}:")  # fmt: skip
    print()
    print("| images | ground truths | detections | yolo_cli.metrics.evaluate ms | pycocotools "
          "evaluate+accumulate ms | pycocotools / ours | mAP@[.5:.95] ours / pycocotools | "
          "mAP@.5 ours / pycocotools |")  # fmt: skip
    print("| ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |")
    print(f"| {m['images']} | {m['gt']} | {m['detections']} | {1e3 * m['ours']:.1f} | "
          f"{1e3 * m['theirs']:.1f} | {m['theirs'] / m['ours']:.1f}× | "
          f"{m['ours_map'][0]:.4f} / {m['theirs_map'][0]:.4f} | "
          f"{m['ours_map'][1]:.4f} / {m['theirs_map'][1]:.4f} |")  # fmt: skip


def print_memory_table(memory: dict, img_size: int) -> None:
    samples = memory["samples"]
    print(f"Resident memory of a separate detect process over {memory['images']} distinct "
          f"synthetic {img_size}×{img_size} JPEGs (annotated images + txt written, "
          f"{memory['rate']:.1f} images/s):")  # fmt: skip
    print()
    print("| images done | " + " | ".join(str(n) for n, _ in samples) + " |")
    print("| --- |" + " ---: |" * len(samples))
    print("| VmRSS MiB | " + " | ".join(f"{kib / 1024:.0f}" for _, kib in samples) + " |")
    print()
    peak_gib = memory["vm_hwm_kib"] / 2**20
    verdict = "meets" if peak_gib <= MEMORY_GOAL_GIB else "misses"
    growth = growth_kib_per_image(samples)
    since = samples[1][0] if len(samples) > 1 else 0
    print(f"Peak resident memory (VmHWM): {memory['vm_hwm_kib'] / 1024:.0f} MiB, {verdict} the "
          f"{MEMORY_GOAL_GIB} GiB goal; growth from {since} images on: {growth:.1f} KiB/image "
          "(least-squares slope).")  # fmt: skip


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> None:
    from yolo_cli.config import DETECT_MODEL
    from yolo_cli.modelfile import shipped_model

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default = shipped_model(DETECT_MODEL)
    parser.add_argument("--model", type=Path, default=default, help="model file")
    parser.add_argument("--quick", action="store_true", help="a few images of each: smoke test")
    parser.add_argument("--images", type=int, help="images for the memory part (default 1000)")
    # the memory part re-runs this script as the detect process
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--every", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        memory_child(args.memory_child, str(args.model), args.out, args.every)
        return
    sizes = QUICK if args.quick else FULL
    if args.images is not None:
        sizes = Sizes(**{**sizes.__dict__, "memory_images": args.images})
    if not args.model.is_file():
        raise SystemExit(f"{args.model}: no such model file")
    benchmark(args, sizes)


def benchmark(args, sizes: Sizes) -> None:
    import tensorflow as tf

    from yolo_cli.config import DEFAULTS, datasets_root
    from yolo_cli.data.load import load_dataset
    from yolo_cli.data.synth import write_synthetic
    from yolo_cli.device import select_device
    from yolo_cli.inference import Detector
    from yolo_cli.summary import total_macs

    load_before = os.getloadavg()[0]
    device = select_device("auto")
    detector = Detector.from_file(args.model, device=device)
    bccd = load_dataset(datasets_root() / "bccd" / "BCCD", split="test")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        synth = write_synthetic(tmp / "synth", sizes.synth_images, seed=1)
        synth_paths = sorted((synth / "images").rglob("*.jpg"))
        bccd_paths = [s.image for s in bccd.samples[: sizes.bccd_images]]
        rows = [
            detect_benchmark("BCCD test", bccd_paths, detector, args.model, tmp, sizes),
            detect_benchmark("synthetic", synth_paths, detector, args.model, tmp, sizes),
        ]
        peak = matmul_gflops(sizes.matmul_n, sizes.matmul_repeats)
        detections, source = bccd_detections(bccd, detector)
        metrics = metrics_benchmark(bccd, detections, sizes.metric_repeats)
        print("  metrics: done", file=sys.stderr)
        memory = memory_benchmark(args.model, sizes.memory_images, tmp)
    macs = total_macs(detector.model)

    print(f"{datetime.date.today()}, {os.cpu_count()} CPU cores ({cpu_name()}), device "
          f"{device.name}, load average {load_before:.1f} at start, {os.getloadavg()[0]:.1f} at "
          f"end; TensorFlow {tf.__version__}; model {args.model} ({detector.meta.img_size} px, "
          f"{len(detector.meta.names)} classes)")  # fmt: skip
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    print()
    print_detect_tables(rows, sizes.repeats)
    print()
    print_rate_table(rows, macs, detector.meta.img_size, peak, sizes)
    print()
    print_metrics_table(metrics, source, sizes.metric_repeats)
    print()
    print_memory_table(memory, DEFAULTS.img_size)


if __name__ == "__main__":
    main()
