"""benchmarks/train_real.py with a few-second budget on a tiny network: the numbers it prints are
those of the run's own files (history, metrics.json, reference JSON), and yolov8_reference.py
reads ultralytics' validator table."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
from markdown import cells
from shared_data import RACCOON, needs_raccoon

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.mark.slow
@needs_raccoon
def test_tiny_budget_report_matches_the_run_files(tmp_path):
    reference = {
        "name": "a made-up reference",
        "classes": {"raccoon": {"ap50": 0.5, "ap": 0.2}},
        "map50": 0.5,
        "map": 0.2,
        "epochs": 7,
        "seconds": 100,
        "images_per_s": 12.5,
        "peak_mib": 999,
    }
    ref_file = tmp_path / "reference.json"
    ref_file.write_text(json.dumps(reference))
    out = tmp_path / "run"
    sets = ["img_size=128", "width=0.25", "batch=8", "max_steps=3", "ema=false"]
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "train_real.py"), "--data", str(RACCOON),
         "--minutes", "0.15", "--reference", str(ref_file), "--diagnose", "1", "--out", str(out),
         *[a for s in sets for a in ("--set", s)]],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    text = done.stdout

    metrics = json.loads((out / "test" / "metrics.json").read_text())
    with (out / "history.csv").open() as f:
        history = list(csv.DictReader(f))
    ours = float(cells(text, "**mAP@0.5**")[1])
    assert ours == pytest.approx(metrics["mAP@0.5"], abs=5e-4)
    assert cells(text, "**mAP@0.5**")[2] == "0.500"
    assert cells(text, "**mAP@0.5**")[3] == (f"{ours / 0.5:.2f}×" if ours else "–")
    assert float(cells(text, "**mAP@[.5:.95]**")[1]) == pytest.approx(
        metrics["mAP@[0.5:0.95]"] or 0.0, abs=5e-4
    )
    assert cells(text, "AP@0.5 raccoon")[2] == "0.500"
    epochs = cells(text, "epochs")
    assert int(epochs[1]) == len(history) >= 1 and epochs[2] == "7"
    assert cells(text, "training wall time, train()")[2] == "100 s"
    assert cells(text, "peak resident memory (training + evaluation)")[2] == "999 MiB"
    assert cells(text, "images seen (steps × batch)")[1] == str(len(history) * 3 * 8)
    assert "--max-steps 3" in text and "--img-size 128" in text and "--no-ema" in text
    # the diagnosis: one row per epoch (every 1) and the augmentation's view
    assert len(cells(text, "1")) == 6 and float(cells(text, "1")[1]) >= 1
    assert float(cells(text, "letterboxed")[1]) == pytest.approx(1.08, abs=0.05)


ULTRALYTICS_VAL = """\
Ultralytics 8.4.190 🚀 Python-3.11.7 torch-2.14.1+cu128 CPU
YOLOv8n summary (fused): 72 layers, 3,006,233 parameters, 0 gradients, 8.1 GFLOPs
\x1b[34m\x1b[1mval: \x1b[0mScanning /tmp/bccd/labels/test... 72 images, 0 backgrounds, 0 corrupt: 100%
                 Class     Images  Instances      Box(P          R      mAP50  mAP50-95): 100%
                   all         72        945      0.744      0.774      0.784      0.495
             Platelets         61         69      0.619      0.609      0.568      0.271
                   RBC         72        805      0.673      0.725      0.808      0.553
                   WBC         71         71      0.941      0.986      0.976      0.661
             motorbike         18         23          0          0   0.000226   4.82e-05
Speed: 0.5ms preprocess, 30.1ms inference, 0.0ms loss, 1.2ms postprocess per image
"""


def test_reference_reads_the_validator_table():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        from yolov8_reference import validator_rows
    finally:
        sys.path.remove(str(BENCHMARKS))
    rows = validator_rows(ULTRALYTICS_VAL)
    assert list(rows) == ["all", "Platelets", "RBC", "WBC", "motorbike"]
    assert (rows["motorbike"]["precision"], rows["motorbike"]["ap"]) == (0.0, 4.82e-05)
    assert rows["all"]["ap50"] == 0.784 and rows["all"]["ap"] == 0.495
    assert rows["Platelets"] == {
        "images": 61, "instances": 69, "precision": 0.619, "recall": 0.609,
        "ap50": 0.568, "ap": 0.271,
    }  # fmt: skip
