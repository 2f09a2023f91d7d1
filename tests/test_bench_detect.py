"""benchmarks/bench_detect.py --quick on a tiny untrained model: it runs to the end and prints
every table, with numbers that hang together (the memory samples, our mAP against pycocotools)."""

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from markdown import cells
from shared_data import needs_bccd

from yolo_cli.config import DEFAULTS
from yolo_cli.model import build_model
from yolo_cli.modelfile import Head, ModelMeta, save_model

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_detect.py"
ANCHORS = [[20.0, 24.0], [60.0, 50.0]]
SIZE = 128


@pytest.mark.slow
@needs_bccd  # the script times and scores BCCD's test split
def test_quick_run_prints_every_table(tmp_path):
    meta = ModelMeta("yolo", list(DEFAULTS.synth_classes), SIZE, [Head(32, ANCHORS)])
    model = build_model(len(meta.names), np.array(ANCHORS), SIZE, width=0.25)
    path = save_model(model, tmp_path / "tiny.keras", meta, include_optimizer=False)

    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--model", str(path), "--images", "40"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout

    for data in ("BCCD test", "synthetic"):
        rate = float(cells(out, data)[3])  # end-to-end images/s
        assert rate > 0
    for stage in ("read + decode", "preprocess", "model", "post-process", "write", "end to end"):
        assert len(cells(out, stage)) == 5  # stage, then ms and share for both data sets
    assert "GFLOP/s" in out and "achieved / matmul" in out

    # the model's classes are not BCCD's: perturbed ground truth, scored alike by both sides
    assert "perturbed ground truth" in out
    metrics = cells(out, "72")
    assert metrics[5].endswith("×")
    for pair in metrics[6:8]:
        ours, theirs = (float(x) for x in pair.split(" / "))
        assert ours == pytest.approx(theirs, abs=1e-3) and 0 < ours < 1

    samples = [int(n) for n in cells(out, "images done")[1:]]
    assert samples[0] == 0 and samples[-1] <= 40 and samples == sorted(samples)
    assert len(cells(out, "VmRSS MiB")) == len(samples) + 1
    assert re.search(r"Peak resident memory \(VmHWM\): \d+ MiB, (meets|misses)", out)
