"""benchmarks/bench_runtimes.py --quick: every runtime is exported, timed and scored, and the
tables print with numbers that hang together."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from yolo_cli.data.synth import write_synthetic

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_runtimes.py"


@pytest.mark.slow
def test_quick_run_prints_every_runtime(tmp_path):
    pytest.importorskip("ai_edge_litert")
    pytest.importorskip("onnxruntime")
    data = write_synthetic(tmp_path / "scenes", 60, seed=3, size=512)
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--quick",
            "--no-v8",
            "--data",
            str(data),
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    text = done.stdout
    assert "QUICK SMOKE RUN" in text and "float32 matmul on this CPU" in text
    results = json.loads(out.read_text())
    names = [r["name"] for r in results["rows"]]
    for name in (
        "TF, BatchNorm folded",
        "LiteRT fp32",
        "LiteRT fp16",
        "LiteRT int8",
        "ONNX Runtime fp32",
    ):
        assert name in names and f"| {name} |" in text
    by_name = {r["name"]: r for r in results["rows"]}
    fp32 = by_name["TF, BatchNorm folded"]["map50"]
    assert fp32 > 0.5  # the shipped model on its own kind of scenes
    for name in ("TF, BatchNorm kept", "LiteRT fp32", "ONNX Runtime fp32"):
        assert abs(by_name[name]["map50"] - fp32) <= 0.005
    for row in results["rows"]:
        assert set(row["end_to_end"]) == {"1", "4"} and row["gflops"] > 0
    stages = results["stages"]
    assert [s["batch"] for s in stages] == [1, 4]
    assert stages[1]["largest activation MB"] == 4 * stages[0]["largest activation MB"]
    assert "Where the time goes" in text
