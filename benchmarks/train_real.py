"""Train on a real dataset for a wall-clock budget and score its test split against a reference.

    .venv/bin/python benchmarks/train_real.py --data ../shared/datasets/raccoon [--minutes 30]
        [--reference runs/ref/v8n-raccoon.json] [--set loss=course --set heads=1 …]
        [--diagnose 10] [--out runs/train/real-raccoon]

What it does, in this one process:
1. ``yolo_cli.train.train`` on the dataset's train split with its val split for model selection
   (``best.keras`` is the epoch of best val fitness, 0.1·mAP@0.5 + 0.9·mAP@[.5:.95]),
   ``yolo train --minutes``: after every epoch the pace so far sets how many epochs fit the
   budget and the learning-rate schedule follows. ``--set FIELD=VALUE`` sets any
   :class:`~yolo_cli.train.TrainConfig` field (the ablations); unset fields are ``yolo
   train``'s defaults.
2. ``yolo_cli.evaluate.run_eval`` of ``best.keras`` on the test split at conf 0.001, as ``yolo
   eval``: AP@0.5 per class, mAP@0.5 and COCO mAP@[.5:.95].
3. With ``--diagnose N``: every N epochs (and at the end), what the network does at the slots
   the targets assign, on up to 64 training images without augmentation — slots per object,
   median p_c of assigned slots, mean and 99.9th percentile p_c of empty slots, median IoU of
   an assigned slot's box with its object — and once what the augmentation shows the network
   (objects per image, visible objects' size, images without any object).

It prints markdown tables: ours next to the reference per class with the ratio ours /
reference (the reference read from ``--reference``, a JSON file that
``benchmarks/yolov8_reference.py`` writes), the training figures (epochs, images/s over the
steps and over ``train()``, peak resident memory), the diagnosis, and ``yolo eval``'s table.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import math
import os
import sys
import time
from pathlib import Path

from bench_detect import cpu_name, status_kib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

MEMORY_GOAL_GIB = 6.0  # at batch 16
DIAGNOSIS_IMAGES = 64


class StepClock:
    """Hooks that count every training step and time those following another step of the
    same epoch (each epoch's first step also waits for the input pipeline)."""

    def __init__(self):
        self.steps = 0
        self.timed_steps = 0
        self.timed_seconds = 0.0
        self._last: float | None = None

    def on_epoch_start(self, epoch, epochs, steps, step) -> None:
        self._last = None

    def on_step(self, step, steps, loss) -> None:
        now = time.monotonic()
        if self._last is not None:
            self.timed_steps += 1
            self.timed_seconds += now - self._last
        self._last = now
        self.steps += 1


def parse_sets(pairs: list[str]) -> dict:
    """``["loss=course", "heads=1"]`` → TrainConfig fields typed as their defaults are."""
    from yolo_cli.train import TrainConfig

    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    out = {}
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        if not sep or name not in fields:
            raise SystemExit(f"--set {pair!r}: expected FIELD=VALUE with a TrainConfig field")
        default = fields[name].default
        if isinstance(default, bool):
            value = raw.lower() in ("1", "true", "yes", "on")
        elif isinstance(default, int) or name in ("num_anchors", "img_size", "max_steps"):
            value = int(raw)
        elif isinstance(default, float) or name == "minutes":
            value = float(raw)
        else:
            value = raw
        out[name] = value
    return out


def train_option(field: str, value) -> str:
    """The ``yolo train`` option that sets TrainConfig ``field`` to ``value``: ``--img-size
    128``; a switch as ``--ema`` or ``--no-ema``."""
    from yolo_cli.train.options import option_name

    name = option_name(field)
    if isinstance(value, bool):
        return name if value else f"--no-{name.removeprefix('--')}"
    return f"{name} {value}"


def slot_statistics(model_path: Path, samples, cfg) -> dict:
    """What the network at ``model_path`` predicts at the slots the targets assign, on
    ``samples`` letterboxed (no augmentation)."""
    import numpy as np

    from yolo_cli.boxes import iou
    from yolo_cli.data.augment import prepare
    from yolo_cli.data.image import read_image
    from yolo_cli.modelfile import load_model, model_outputs
    from yolo_cli.postprocess import activate, grid_to_boxes
    from yolo_cli.targets import assign_targets

    model, meta = load_model(model_path)
    objects = assigned = 0
    p_assigned, p_empty, ious = [], [], []
    for s in samples:
        image, boxes, classes = prepare(read_image(s.image), s.boxes, s.classes, meta.img_size)
        grids, _ = assign_targets(
            boxes, classes, meta.heads, meta.img_size, meta.num_classes, rule=cfg.assign
        )
        raws = model_outputs(model, image[None].astype(np.float32))
        objects += len(boxes)
        for grid, raw, head in zip(grids, raws, meta.heads):
            act = activate(raw, meta.class_activation, head.scale_xy)
            pred, p_c, _ = (t.numpy()[0] for t in grid_to_boxes(act, head.anchors, meta.img_size))
            truth, obj, _ = (
                t.numpy()[0] for t in grid_to_boxes(grid[None], head.anchors, meta.img_size)
            )
            on = obj == 1
            assigned += int(on.sum())
            p_assigned.extend(p_c[on])
            p_empty.extend(p_c[~on])
            ious.extend(np.diag(iou(pred[on], truth[on])) if on.any() else [])
    p_empty = np.asarray(p_empty)
    return {
        "slots per object": assigned / max(objects, 1),
        "p_c assigned (median)": float(np.median(p_assigned)) if p_assigned else math.nan,
        "p_c empty (mean)": float(p_empty.mean()) if len(p_empty) else math.nan,
        "p_c empty (99.9th pct)": float(np.percentile(p_empty, 99.9)) if len(p_empty) else math.nan,
        "IoU assigned (median)": float(np.median(ious)) if ious else math.nan,
    }


def augmentation_statistics(train_set, cfg, params) -> dict:
    """One epoch of augmented training images as the network sees them: objects per image,
    median side (sqrt area, input px) of the objects, share of images with no object; and the
    same without augmentation."""
    import numpy as np

    from yolo_cli.data.augment import prepare
    from yolo_cli.data.image import read_image
    from yolo_cli.data.pipeline import sample_rng, training_example

    def summary(examples):
        counts = [len(b) for _, b in examples]
        sides = np.concatenate(
            [np.sqrt(np.prod(b[:, 2:] - b[:, :2], axis=1)) for _, b in examples if len(b)]
            or [np.zeros(0)]
        )
        return {
            "objects per image": float(np.mean(counts)),
            "object side px (median)": float(np.median(sides)) if len(sides) else math.nan,
            "images without objects": float(np.mean([c == 0 for c in counts])),
        }

    samples = train_set.samples
    plain, augmented = [], []
    for i, s in enumerate(samples):
        image = read_image(s.image)
        _, boxes, _ = prepare(image, s.boxes, s.classes, cfg.img_size)
        plain.append((None, boxes))
        if params is not None:
            _, boxes, _ = training_example(
                samples, i, sample_rng(cfg.seed, 0, i), cfg.img_size, params
            )
            augmented.append((None, boxes))
    return {"letterboxed": summary(plain), "augmented": summary(augmented) if augmented else None}


class Diagnosis:
    """Hooks: every ``every`` epochs, :func:`slot_statistics` of the run's last checkpoint."""

    def __init__(self, run_dir: Path, samples, cfg, every: int):
        self.run_dir, self.samples, self.cfg, self.every = run_dir, samples, cfg, every
        self.rows: list[tuple[int, dict]] = []

    def on_epoch_end(self, row, epochs) -> None:
        if row["epoch"] == 1 or row["epoch"] % self.every == 0:
            self.record(row["epoch"])

    def record(self, epoch: int) -> None:
        from yolo_cli.train.checkpoint import CHECKPOINT

        self.rows.append(
            (epoch, slot_statistics(self.run_dir / CHECKPOINT, self.samples, self.cfg))
        )


def cell(x: float) -> str:
    return f"{x:.3f}" if isinstance(x, float) and math.isfinite(x) else "–"


def unit(reference: dict, key: str, name: str) -> str:
    """``1806 s`` for a figure of the reference, ``–`` where it has none."""
    return f"{reference[key]} {name}" if key in reference else "–"


def print_comparison(report, reference: dict | None) -> None:
    """Ours next to the reference: AP@0.5 per class, mAP@0.5 and mAP@[.5:.95] (test split)."""
    at_iou = report.at_iou
    ours = {name: float(at_iou.ap[k, 0]) for k, name in enumerate(at_iou.names)}
    ours["all"] = float(at_iou.map)
    ours["mAP@[.5:.95]"] = float(report.coco.map_all)
    ref = {}
    if reference:
        ref = {name: v["ap50"] for name, v in reference["classes"].items()}
        ref["all"], ref["mAP@[.5:.95]"] = reference["map50"], reference["map"]
    name = reference["name"] if reference else "no reference given"
    print(f"| test split ({len(report.dataset)} images) | yolo-cli | {name} | ours / reference |")
    print("| --- | ---: | ---: | ---: |")
    labels = {k: f"AP@0.5 {k}" for k in at_iou.names}
    labels |= {"all": "**mAP@0.5**", "mAP@[.5:.95]": "**mAP@[.5:.95]**"}
    for key in [*at_iou.names, "all", "mAP@[.5:.95]"]:
        r = ref.get(key)
        ratio = f"{ours[key] / r:.2f}×" if r and math.isfinite(ours[key]) else "–"
        print(
            f"| {labels[key]} | {cell(ours[key])} | {cell(r) if r is not None else '–'} | {ratio} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="dataset (VOC, COCO, YOLO txt)")
    parser.add_argument("--minutes", type=float, default=30.0, help="training budget (wall clock)")
    parser.add_argument("--reference", type=Path, help="JSON of benchmarks/yolov8_reference.py")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="a TrainConfig field (repeatable): loss=course, heads=1, …")  # fmt: skip
    parser.add_argument("--diagnose", type=int, metavar="N", help="slot statistics every N epochs")
    parser.add_argument("--out", type=Path, help="run folder (default runs/train/real-<data>)")
    args = parser.parse_args()
    if not args.minutes > 0:
        parser.error("--minutes must be above 0")
    from yolo_cli.errors import YoloError

    try:
        benchmark(args)
    except YoloError as e:
        print(e, file=sys.stderr)
        raise SystemExit(2) from None


def benchmark(args) -> None:
    import tensorflow as tf

    from yolo_cli.evaluate import EvalOptions, format_report, run_eval
    from yolo_cli.modelfile import read_meta
    from yolo_cli.train import Outcome, TrainConfig, TrainHooks, train
    from yolo_cli.train.loop import load_splits
    from yolo_cli.train.recipe import augmentation

    reference = json.loads(args.reference.read_text()) if args.reference else None
    out = args.out or Path("runs/train") / f"real-{Path(args.data).name}"
    cfg = TrainConfig(data=args.data, out=str(out), minutes=args.minutes, **parse_sets(args.set))
    load_before = os.getloadavg()[0]
    clock = StepClock()
    hooks = TrainHooks(on_epoch_start=clock.on_epoch_start, on_step=clock.on_step)
    diagnosis = None
    if args.diagnose:
        train_set, _ = load_splits(cfg)
        picked = train_set.samples[:: max(1, len(train_set) // DIAGNOSIS_IMAGES)][:DIAGNOSIS_IMAGES]
        diagnosis = Diagnosis(out, picked, cfg, args.diagnose)
        hooks.on_epoch_end = diagnosis.on_epoch_end
    started = time.monotonic()
    result = train(cfg, hooks)
    train_seconds = time.monotonic() - started
    if result.outcome not in (Outcome.FINISHED, Outcome.EARLY_STOPPED):
        print(f"training ended: {result.outcome.value}: {result.detail}", file=sys.stderr)
    best_model = result.run_dir / "best.keras"
    report = run_eval(
        EvalOptions(
            data=cfg.data, split="test", model=str(best_model), out=str(result.run_dir / "test")
        )
    )
    peak_kib = status_kib("VmHWM")
    images = clock.steps * cfg.batch

    print(f"{datetime.date.today()}, {os.cpu_count()} CPU cores ({cpu_name()}), load average "
          f"{load_before:.1f} at start, {os.getloadavg()[0]:.1f} at end; TensorFlow "
          f"{tf.__version__}")  # fmt: skip
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    changed = {k: v for k, v in dataclasses.asdict(cfg).items()
               if v != getattr(TrainConfig(), k) and k not in ("data", "out", "minutes")}  # fmt: skip
    sets = " ".join(train_option(k, v) for k, v in changed.items())
    print(
        f"same training as: yolo train --data {cfg.data} --minutes {cfg.minutes:g} {sets}".rstrip()
    )
    print()
    print_comparison(report, reference)
    print()
    print(f"| training ({args.minutes:g} min budget) | yolo-cli | reference |")
    print("| --- | ---: | ---: |")
    ref = reference or {}
    print(f"| epochs | {result.epochs_done} | {ref.get('epochs', '–')} |")
    best = f"{cell(result.best_map50)} / {cell(result.best_map)} ({result.best_epoch})"
    print(f"| best.keras: val mAP@0.5 / mAP@[.5:.95] (epoch) | {best} | – |")
    print(f"| images seen (steps × batch) | {images} | – |")
    print(f"| training wall time, train() | {train_seconds:.0f} s | {unit(ref, 'seconds', 's')} |")
    rate = images / train_seconds
    print(f"| training images/s over train() (validation, checkpoints included) | {rate:.1f} | "
          f"{ref.get('images_per_s', '–')} |")  # fmt: skip
    steps_rate = (
        f"{clock.timed_steps * cfg.batch / clock.timed_seconds:.1f}" if clock.timed_steps else "–"
    )
    print(f"| training images/s over the steps alone | {steps_rate} | – |")
    verdict = "meets" if peak_kib <= MEMORY_GOAL_GIB * 2**20 else "misses"
    print(f"| peak resident memory (training + evaluation) | {peak_kib / 1024:.0f} MiB, {verdict} "
          f"the {MEMORY_GOAL_GIB:g} GiB goal | {unit(ref, 'peak_mib', 'MiB')} |")  # fmt: skip
    if diagnosis is not None:
        if not diagnosis.rows or diagnosis.rows[-1][0] != result.epochs_done:
            diagnosis.record(result.epochs_done)
        print()
        keys = list(diagnosis.rows[0][1])
        print("| epoch | " + " | ".join(keys) + " |")
        print("| ---: |" + " ---: |" * len(keys))
        for epoch, stats in diagnosis.rows:
            print(f"| {epoch} | " + " | ".join(cell(float(stats[k])) for k in keys) + " |")
        train_set, _ = load_splits(cfg)
        sized = dataclasses.replace(cfg, img_size=read_meta(best_model).img_size)
        aug = augmentation_statistics(train_set, sized, augmentation(cfg, train_set))
        print()
        print("| training images | " + " | ".join(aug["letterboxed"]) + " |")
        print("| --- |" + " ---: |" * len(aug["letterboxed"]))
        for label, stats in aug.items():
            if stats:
                print(f"| {label} | " + " | ".join(cell(float(v)) for v in stats.values()) + " |")
    print()
    print(f"yolo eval of {best_model} on the test split (metrics.json in {report.run_dir}):")
    print(format_report(report))


if __name__ == "__main__":
    main()
