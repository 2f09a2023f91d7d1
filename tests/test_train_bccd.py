"""benchmarks/train_bccd.py with a few-second budget on a tiny model: it trains one epoch on
BCCD, scores the test split and prints the comparison table, training rates and peak memory."""

import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
from markdown import cells

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "train_bccd.py"


@pytest.mark.slow
def test_tiny_budget_prints_the_comparison(tmp_path):
    out = tmp_path / "run"
    args = ["--minutes", "0.05", "--img-size", "128", "--width", "0.25", "--batch", "8"]
    done = subprocess.run(
        [sys.executable, str(SCRIPT), *args, "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    text = done.stdout

    # the budget is over before epoch 1 ends: one epoch, its best.keras scored on the test split
    assert cells(text, "epochs (reference: 35 in 30 min)")[1] == "1"
    assert (out / "best.keras").is_file() and (out / "test" / "metrics.json").is_file()
    for name, reference in (("RBC", "0.787"), ("WBC", "0.975"), ("Platelets", "0.451")):
        row = cells(text, f"AP@0.5 {name}")
        assert 0 <= float(row[1]) <= 1 and row[2] == reference
    overall = cells(text, "mAP@0.5 (all classes)")
    assert math.isfinite(float(overall[1])) and overall[2] == "0.738"
    assert overall[3] == f"{float(overall[1]) / 0.738:.2f}×"

    # 205 train images at batch 8: 25 steps of 8, the last partial batch dropped
    assert cells(text, "images seen (steps × batch)")[1] == "200 (25 steps)"
    assert (
        float(cells(text, "images/s over train() (validation, checkpoints, tracing included)")[1])
        > 0
    )
    assert re.search(
        r"\| peak resident memory, VmHWM .* \| \d+ MiB, (meets|misses) the 6 GiB goal", text
    )
    assert f"--minutes 0.05 --out {out}" in text  # the equivalent yolo train command
