"""The recipe's ablation: each change to the course's recipe added in turn, on several datasets,
each run a ``train_real.py`` training of the same wall-clock budget, next to YOLOv8n trained the
same way (``yolov8_reference.py``).

    .venv/bin/python benchmarks/ablation.py --venv /tmp/uvenv [--datasets raccoon bccd highway]
        [--minutes 30] [--variants course ratio iou mosaic ema heads2 heads3 default spp]
        [--runs runs/ablation]

Runs what is missing (one training at a time; a run whose report exists is kept), then prints
one markdown table: test mAP@0.5 and mAP@[.5:.95] per dataset and variant, with epochs
trained, and the reference row. The variants, cumulative up to ``heads3`` (each adds one change
to the one before), then ``yolo train``'s recipe and a candidate beyond it:

- ``course``: one stride-32 grid, the course's loss, one slot per object, no mosaic, no EMA;
- ``ratio``: + neighbour cells and every anchor within 4× (``--assign ratio``);
- ``iou``: + the IoU-aware loss (``--loss iou``);
- ``mosaic``: + mosaics of four (``--mosaic 1``);
- ``ema``: + the moving average of the weights (``--ema``);
- ``heads2``: + the stride-16 grid (``--heads 2``);
- ``heads3``: + the stride-8 grid (``--heads 3``);
- ``default``: ``heads2`` without mosaics (``--mosaic 0``), ``yolo train``'s recipe;
- ``spp``: the default + spatial pyramid pooling of the stride-32 features (``--spp``).

``--collect`` only prints the table of the runs already there.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from train_real import cell

_COURSE = ["heads=1", "loss=course", "assign=best", "mosaic=0", "ema=false"]
VARIANTS = {
    "course": _COURSE,
    "ratio": _COURSE[:2] + ["assign=ratio"] + _COURSE[3:],
    "iou": ["heads=1", "loss=iou", "assign=ratio", "mosaic=0", "ema=false"],
    "mosaic": ["heads=1", "loss=iou", "assign=ratio", "mosaic=1", "ema=false"],
    "ema": ["heads=1", "mosaic=1"],
    "heads2": ["mosaic=1"],
    "heads3": ["heads=3", "mosaic=1"],
    "default": [],
    "spp": ["spp=true"],
}
LABELS = {
    "course": "the course's recipe (1 grid, squared errors, 1 slot per object)",
    "ratio": "+ neighbour cells and anchors within 4× (`--assign ratio`)",
    "iou": "+ IoU-aware loss (`--loss iou`)",
    "mosaic": "+ mosaic (`--mosaic 1`)",
    "ema": "+ moving average of the weights (`--ema`)",
    "heads2": "+ stride-16 grid (`--heads 2`)",
    "heads3": "+ stride-8 grid (`--heads 3`)",
    "default": "the stride-16 row without mosaics (`--mosaic 0`) = `yolo train`'s default",
    "spp": "the default + spatial pyramid pooling (`--spp`)",
}
HERE = Path(__file__).resolve().parent


def run_folder(runs: Path, variant: str, dataset: str) -> Path:
    return runs / f"{variant}-{dataset}"


def scores(folder: Path) -> tuple[float, float, int] | None:
    """``(mAP@0.5, mAP@[.5:.95], epochs)`` of a finished ``train_real.py`` run, else None."""
    metrics = folder / "test" / "metrics.json"
    history = folder / "history.csv"
    if not metrics.is_file() or not history.is_file():
        return None
    m = json.loads(metrics.read_text())
    epochs = len(history.read_text().strip().splitlines()) - 1
    return float(m["mAP@0.5"]), float(m["mAP@[0.5:0.95]"] or 0.0), epochs


def table(datasets: list[str], variants: list[str], runs: Path, refs: Path) -> str:
    head = "| recipe | " + " | ".join(
        f"{d} mAP@0.5 | {d} mAP@[.5:.95] | {d} epochs" for d in datasets
    )
    lines = [head + " |", "| --- |" + " ---: | ---: | ---: |" * len(datasets)]
    row = ["YOLOv8n from scratch, 416 px (reference)"]
    for d in datasets:
        ref = refs / d / "reference.json"
        if ref.is_file():
            r = json.loads(ref.read_text())
            row += [cell(r["map50"]), cell(r["map"]), str(r["epochs"])]
        else:
            row += ["–"] * 3
    lines.append("| " + " | ".join(row) + " |")
    for v in variants:
        row = [LABELS[v]]
        for d in datasets:
            s = scores(run_folder(runs, v, d))
            row += [cell(s[0]), cell(s[1]), str(s[2])] if s else ["–"] * 3
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--venv", type=Path, help="virtual env with ultralytics (references)")
    parser.add_argument("--datasets", nargs="+", default=["raccoon", "bccd", "highway"])
    parser.add_argument("--root", type=Path, default=HERE.parent.parent / "shared" / "datasets")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--runs", type=Path, default=Path("runs/ablation"))
    parser.add_argument("--collect", action="store_true", help="only print the table")
    args = parser.parse_args()
    refs = args.runs / "ref"
    if not args.collect:
        for d in args.datasets:
            if args.venv and not (refs / d / "reference.json").is_file():
                subprocess.run(
                    [sys.executable, str(HERE / "yolov8_reference.py"), "--venv", str(args.venv),
                     "--data", str(args.root / d), "--minutes", f"{args.minutes:g}",
                     "--out", str(refs / d)],
                    check=True,
                )  # fmt: skip
        for v in args.variants:
            for d in args.datasets:
                folder = run_folder(args.runs, v, d)
                if scores(folder):
                    continue
                ref = refs / d / "reference.json"
                command = [sys.executable, str(HERE / "train_real.py"), "--data", str(args.root / d),
                           "--minutes", f"{args.minutes:g}", "--out", str(folder)]  # fmt: skip
                command += ["--reference", str(ref)] if ref.is_file() else []
                command += [a for s in VARIANTS[v] for a in ("--set", s)]
                with (args.runs / f"{v}-{d}.md").open("w") as report:
                    subprocess.run(command, stdout=report, check=True)
    print(table(args.datasets, args.variants, args.runs, refs))


if __name__ == "__main__":
    main()
