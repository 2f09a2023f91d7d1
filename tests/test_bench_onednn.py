"""benchmarks/bench_onednn.py: both processes run, one with oneDNN and one without, and the
table's ratios are the ratios of its own numbers."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from yolo_cli.data.synth import write_synthetic

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_onednn.py"


@pytest.mark.slow
def test_the_table_compares_onednn_off_and_on(tmp_path):
    data = write_synthetic(tmp_path / "scenes", 40, seed=3, size=416)
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--data", str(data), "--steps", "1", "--images", "16"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    rows = {
        cells[0]: cells[1:]
        for line in done.stdout.splitlines()
        if line.startswith("| ") and not line.startswith("| ---")
        for cells in [[c.strip() for c in line.strip("|").split("|")]]
    }
    assert rows["oneDNN in use (IsMklEnabled)"][:2] == ["False", "True"]
    timed = [label for label in rows if "/s" in label or "ms/image" in label]
    assert len(timed) == 6
    for label in timed:
        off, on, ratio = rows[label]
        assert float(off) > 0 and float(on) > 0
        assert float(ratio.rstrip("×")) == pytest.approx(float(on) / float(off), rel=0.1, abs=0.02)
    diff = float(rows["shipped model's raw outputs, max abs difference"][1])
    assert 0 <= diff < 1e-3
    assert re.search(r"train step, scenes, images/s", done.stdout)
