"""Train on BCCD for a fixed wall-clock budget and score the test split against the reference.

    .venv/bin/python benchmarks/train_bccd.py [--minutes 30] [--img-size 416] [--batch 16]
                                              [--width W] [--lambda-obj 1] [--seed 0]
                                              [--out runs/train/bccd-30m]

What it does, all in this one process:
1. ``yolo_cli.train.train`` on BCCD's official train split (205 images) with the val split (87)
   for model selection: ``best.keras`` is the epoch with the best val mAP@0.5. ``--minutes`` is
   ``yolo train --minutes``: after every epoch, the pace so far sets how many epochs fit the
   budget, and the learning-rate schedule stretches to them.
2. ``yolo_cli.evaluate.run_eval`` of ``best.keras`` on the test split (72 images) at conf 0.001,
   as ``yolo eval``: AP@0.5 per class, mAP@0.5 and COCO mAP@[.5:.95].

It prints one markdown table next to the reference of issue 4 (ultralytics 8.4 YOLOv8n from
scratch, default recipe, 416 px, 30 minutes = 35 epochs on this kind of 2-core CPU) with the
ratio ours / reference per row; then the training command and config, epochs, training images/s
and the peak resident memory (VmHWM of this process, which trains and then evaluates), and
``yolo eval``'s own table. Training images/s is given twice: images seen (steps × batch; the
last partial batch of an epoch is dropped) over the wall time of ``train()``, validation after
every epoch, checkpoints and tracing included; and over the time of the training steps alone
(between consecutive steps of an epoch, so each epoch's first step, which also waits for the
input pipeline to start, is left out).
"""

from __future__ import annotations

import argparse
import csv
import datetime
import math
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path

from bench_detect import cpu_name, status_kib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# issue 4, item 9: ultralytics 8.4 YOLOv8n trained from scratch at 416 px for 30 minutes
# (35 epochs) on the same train split, scored on the test split
REFERENCE = {"RBC": 0.787, "WBC": 0.975, "Platelets": 0.451, "all": 0.738, "mAP@[.5:.95]": 0.447}
REFERENCE_NAME = "ultralytics YOLOv8n, scratch, 416 px, 30 min (35 epochs)"
MEMORY_GOAL_GIB = 6.0  # at batch 16, 416 px


class StepClock:
    """A ``train(on_step=…)`` hook: counts every step and times those that follow another step
    of the same epoch (``step`` is the count of steps done in the epoch, 1 after its first)."""

    def __init__(self):
        self.steps = 0
        self.timed_steps = 0
        self.timed_seconds = 0.0
        self._last: float | None = None

    def __call__(self, epoch: int, step: int, loss: float) -> None:
        now = time.monotonic()
        if step > 1 and self._last is not None:
            self.timed_steps += 1
            self.timed_seconds += now - self._last
        self._last = now
        self.steps += 1


def best_epoch(run_dir: Path) -> tuple[int, float]:
    """``(epoch, val mAP@0.5)`` of the best epoch in the run's ``history.csv`` (first on ties)."""
    with (run_dir / "history.csv").open() as f:
        rows = [r for r in csv.DictReader(f) if math.isfinite(float(r["val_map50"]))]
    if not rows:
        return 0, float("nan")
    best = max(rows, key=lambda r: float(r["val_map50"]))
    return int(best["epoch"]), float(best["val_map50"])


def ratio(ours: float, reference: float) -> str:
    return f"{ours / reference:.2f}×" if math.isfinite(ours) else "–"


def score(x: float) -> str:
    return f"{x:.3f}" if math.isfinite(x) else "–"


def print_table(report) -> None:
    """Ours next to the reference: AP@0.5 per class, mAP@0.5, mAP@[.5:.95] on the test split."""
    at_iou = report.at_iou
    ours = {name: float(at_iou.ap[k, 0]) for k, name in enumerate(at_iou.names)}
    ours["all"] = float(at_iou.map)
    ours["mAP@[.5:.95]"] = float(report.coco.map_all)
    labels = {name: f"AP@0.5 {name}" for name in at_iou.names}
    labels |= {"all": "mAP@0.5 (all classes)", "mAP@[.5:.95]": "mAP@[.5:.95]"}
    print(f"| BCCD test ({len(report.dataset)} images) | yolo-cli | {REFERENCE_NAME} "
          "| ours / reference |")  # fmt: skip
    print("| --- | ---: | ---: | ---: |")
    for key in [*at_iou.names, "all", "mAP@[.5:.95]"]:
        ref = REFERENCE.get(key)
        ref_cell = f"{ref:.3f}" if ref is not None else "–"
        ratio_cell = ratio(ours[key], ref) if ref is not None else "–"
        print(f"| {labels[key]} | {score(ours[key])} | {ref_cell} | {ratio_cell} |")


def yolo_train_command(cfg) -> str:
    """The ``yolo train`` command line that runs the same training as this script."""
    return (
        f"yolo train --data {cfg.data} --img-size {cfg.img_size} --batch {cfg.batch} "
        f"--width {cfg.width:g} --lambda-obj {cfg.lambda_obj:g} --seed {cfg.seed} "
        f"--minutes {cfg.minutes:g} --out {cfg.out}"
    )


def main() -> None:
    from yolo_cli.config import DEFAULTS

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="training budget (wall clock)")
    parser.add_argument("--img-size", type=int, default=DEFAULTS.img_size, help="input side")
    parser.add_argument("--batch", type=int, default=DEFAULTS.batch, help="batch size")
    parser.add_argument("--width", type=float, help="width multiplier (default: yolo train's)")
    parser.add_argument(
        "--lambda-obj", type=float, default=DEFAULTS.lambda_obj, help="yolo train --lambda-obj"
    )
    parser.add_argument("--seed", type=int, default=DEFAULTS.seed)
    parser.add_argument("--out", type=Path, help="run folder (default runs/train/bccd-<minutes>m)")
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

    from yolo_cli.config import datasets_root
    from yolo_cli.evaluate import EvalOptions, format_report, run_eval
    from yolo_cli.train import TrainConfig, train

    cfg = TrainConfig(
        data=str(datasets_root() / "bccd"),
        out=str(args.out or Path("runs/train") / f"bccd-{args.minutes:g}m"),
        minutes=args.minutes,
        img_size=args.img_size,
        batch=args.batch,
        seed=args.seed,
        lambda_obj=args.lambda_obj,
        **({"width": args.width} if args.width is not None else {}),
    )
    command = yolo_train_command(cfg)  # before train() turns --minutes into an epoch count
    load_before = os.getloadavg()[0]
    clock = StepClock()
    started = time.monotonic()
    result = train(cfg, on_step=clock)
    train_seconds = time.monotonic() - started
    if result.stopped:
        print(result.stopped, file=sys.stderr)
    best_model = result.run_dir / "best.keras"
    if not best_model.is_file():
        raise SystemExit(f"{result.run_dir}: no best.keras to evaluate")

    report = run_eval(
        EvalOptions(
            data=cfg.data,
            split="test",
            model=str(best_model),
            batch=cfg.batch,
            out=str(result.run_dir / "test"),
        )
    )
    peak_kib = status_kib("VmHWM")
    epoch, val_map50 = best_epoch(result.run_dir)
    images = clock.steps * cfg.batch

    print(f"{datetime.date.today()}, {os.cpu_count()} CPU cores ({cpu_name()}), load average "
          f"{load_before:.1f} at start, {os.getloadavg()[0]:.1f} at end; TensorFlow "
          f"{tf.__version__}")  # fmt: skip
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    print(f"same training as: {command}")
    config = {k: v for k, v in asdict(cfg).items() if k != "extra"}
    print(f"config (epochs: what the budget set): {config}")
    if result.stopped:
        print(f"training ended early: {result.stopped}")
    print()
    print_table(report)
    print()
    print(f"| training ({args.minutes:g} min budget) | |")
    print("| --- | ---: |")
    print(f"| epochs (reference: 35 in 30 min) | {result.epochs_done} |")
    print(f"| best val mAP@0.5 (epoch of best.keras) | {score(val_map50)} (epoch {epoch}) |")
    print(f"| images seen (steps × batch) | {images} ({clock.steps} steps) |")
    print(f"| training wall time, train() | {train_seconds:.0f} s |")
    print(f"| images/s over train() (validation, checkpoints, tracing included) "
          f"| {images / train_seconds:.1f} |")  # fmt: skip
    step_rate = (
        f"{clock.timed_steps * cfg.batch / clock.timed_seconds:.1f}" if clock.timed_steps else "–"
    )
    print(f"| images/s over the training steps alone | {step_rate} |")
    verdict = "meets" if peak_kib <= MEMORY_GOAL_GIB * 2**20 else "misses"
    print(f"| peak resident memory, VmHWM (training + evaluation) | {peak_kib / 1024:.0f} MiB, "
          f"{verdict} the {MEMORY_GOAL_GIB:g} GiB goal (set at batch 16, 416 px) |")  # fmt: skip
    print()
    print(f"yolo eval of {best_model} on the test split (metrics.json in {report.run_dir}):")
    print(format_report(report))


if __name__ == "__main__":
    main()
