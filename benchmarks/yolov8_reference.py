"""The reference of the training benchmarks: ultralytics YOLOv8n trained from scratch on the same
dataset, on this machine, for the same wall-clock budget, scored on the same test split.

    .venv/bin/python benchmarks/yolov8_reference.py --venv /tmp/uvenv --data ../shared/datasets/raccoon \
        [--minutes 30] [--img-size 416] [--out runs/ref/raccoon]

ultralytics is not a dependency of this project: it runs in its own virtual environment
(``python3 -m venv /tmp/uvenv && /tmp/uvenv/bin/pip install ultralytics==8.4.190``), as a
subprocess, offline (``YOLO_OFFLINE=1``), with its default recipe: ``model=yolov8n.yaml
pretrained=False time=<hours> imgsz=416 seed=0 device=cpu``. The dataset is first written in
YOLO txt by ``yolo data convert`` (same splits as ours). Its own validator scores ``best.pt`` on
the test split. Writes ``reference.json`` in ``--out`` (what ``benchmarks/train_real.py
--reference`` reads): AP@0.5 and AP@[.5:.95] per class, mAP@0.5, mAP@[.5:.95], epochs,
training seconds, training images/s and peak resident memory (``/usr/bin/time -v``).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_NUMBER = r"(\d+(?:\.\d*)?(?:e[-+]?\d+)?)"  # 0.568, 0, 4.82e-05 (a class barely found)
_ROW = re.compile(
    rf"^\s*(\S.*?)\s+(\d+)\s+(\d+)\s+{_NUMBER}\s+{_NUMBER}\s+{_NUMBER}\s+{_NUMBER}\s*$"
)


def run(command: list[str], log: Path, env: dict | None = None) -> str:
    """Run ``command``, its output (stdout and stderr) to ``log``; returns the output."""
    with log.open("w") as f:
        done = subprocess.run(command, stdout=f, stderr=subprocess.STDOUT, env=env)
    text = _ANSI.sub("", log.read_text(errors="replace"))
    if done.returncode:
        raise SystemExit(f"{' '.join(command[:3])} … failed ({done.returncode}); see {log}")
    return text


def validator_rows(text: str) -> dict[str, dict]:
    """The last table of ultralytics' validator: name → {images, instances, P, R, ap50, ap}."""
    rows: dict[str, dict] = {}
    for line in text.splitlines():
        line = line.split("\r")[-1]
        m = _ROW.match(line)
        if m:
            name = m.group(1).strip()
            if name == "all":
                rows = {}
            images, instances, p, r, ap50, ap = m.groups()[1:]
            rows[name] = {"images": int(images), "instances": int(instances), "precision": float(p),
                          "recall": float(r), "ap50": float(ap50), "ap": float(ap)}  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--venv", type=Path, required=True, help="virtual env with ultralytics")
    parser.add_argument("--data", required=True, help="dataset (any format yolo reads)")
    parser.add_argument("--minutes", type=float, default=30.0, help="training budget")
    parser.add_argument("--img-size", type=int, default=416, help="ultralytics imgsz")
    parser.add_argument("--out", type=Path, help="folder (default runs/ref/<data>)")
    args = parser.parse_args()
    out = (args.out or Path("runs/ref") / Path(args.data).name).absolute()
    out.mkdir(parents=True, exist_ok=True)
    data = out / "data"
    if not (data / "data.yaml").is_file():
        yolo = Path(sys.executable).with_name("yolo")
        run(
            [str(yolo), "data", "convert", args.data, str(data), "--to", "yolo"],
            out / "convert.log",
        )
    env = {**os.environ, "YOLO_OFFLINE": "1"}
    ultra = str(args.venv / "bin" / "yolo")
    common = [f"data={data / 'data.yaml'}", f"imgsz={args.img_size}", "device=cpu", "plots=False",
              f"project={out}", "exist_ok=True"]  # fmt: skip
    trained = run(
        ["/usr/bin/time", "-v", ultra, "detect", "train", "model=yolov8n.yaml", "pretrained=False",
         f"time={args.minutes / 60:g}", "seed=0", "name=train", *common],
        out / "train.log", env,
    )  # fmt: skip
    tested = run(
        [ultra, "detect", "val", f"model={out / 'train' / 'weights' / 'best.pt'}", "split=test",
         "name=test", *common],
        out / "test.log", env,
    )  # fmt: skip
    rows = validator_rows(tested)
    if "all" not in rows:
        raise SystemExit(f"no validator table in {out / 'test.log'}")
    names = yaml.safe_load((data / "data.yaml").read_text())["names"]
    names = list(names.values()) if isinstance(names, dict) else list(names)
    if len(names) == 1:  # the validator prints no class rows for one class
        rows[names[0]] = rows["all"]
    with (out / "train" / "results.csv").open() as f:
        results = [{k.strip(): v for k, v in r.items()} for r in csv.DictReader(f)]
    seconds = float(results[-1].get("time", "nan"))
    train_images = len(list((data / "images" / "train").glob("*")))
    peak = re.search(r"Maximum resident set size \(kbytes\): (\d+)", trained)
    reference = {
        "name": f"ultralytics YOLOv8n, scratch, {args.img_size} px, {args.minutes:g} min "
        f"({len(results)} epochs)",
        "classes": {k: v for k, v in rows.items() if k != "all"},
        "map50": rows["all"]["ap50"],
        "map": rows["all"]["ap"],
        "epochs": len(results),
        "seconds": round(seconds),
        "images_per_s": round(train_images * len(results) / seconds, 1) if seconds else None,
        "peak_mib": round(int(peak.group(1)) / 1024) if peak else None,
    }
    (out / "reference.json").write_text(json.dumps(reference, indent=1))
    print(json.dumps(reference, indent=1))


if __name__ == "__main__":
    main()
