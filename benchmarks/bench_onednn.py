"""TensorFlow with and without oneDNN on this CPU: training step and detection speed, and how
far the numbers move.

    .venv/bin/python benchmarks/bench_onednn.py [--data PATH] [--steps 8] [--images 20]

TensorFlow's x86 wheels turn oneDNN on by themselves only on CPUs with AVX512_VNNI, AVX512_BF16
or AMX; elsewhere (AVX2 laptops and many cloud machines) it stays off unless
``TF_ENABLE_ONEDNN_OPTS=1``. This script runs the same measurement in two fresh processes, one
with ``TF_ENABLE_ONEDNN_OPTS=0`` and one with ``=1``, one after the other:

- train step: forward, the course's loss over every head, gradients and an Adam update of the
  network ``yolo train`` builds for the dataset (``bench_pipeline.train_step``), batch
  ``DEFAULTS.batch`` held in memory; best images/s of ``--steps`` steps and CPU ms/image;
- detect: ``Detector.from_file`` of the shipped model on ``data/samples/street_1.jpg``,
  letterbox to boxes, best ms/image of ``--images`` calls of one image, and of batches of
  ``DEFAULTS.batch`` copies (as ``yolo eval`` runs);
- numbers: the shipped model's raw outputs on that image, max |difference| between the two.

Prints one markdown table with the ratio on / off; every number comes from this one run.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).parent))

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "samples" / "street_1.jpg"


def measure(data: Path, steps: int, images: int, raw_out: Path) -> dict:
    """One process's figures: train step and detect rates, oneDNN's state; writes the shipped
    model's raw outputs on :data:`SAMPLE` to ``raw_out`` (``.npz``)."""
    import numpy as np
    from bench_pipeline import best, make_setup, pipeline, train_step
    from tensorflow.python.util import _pywrap_util_port

    from yolo_cli.boxes import resize_image
    from yolo_cli.config import DEFAULTS
    from yolo_cli.data.image import read_image
    from yolo_cli.inference import Detector
    from yolo_cli.modelfile import model_outputs

    setup = make_setup(data, DEFAULTS.img_size, DEFAULTS.heads, DEFAULTS.batch)
    batch_images, targets = next(iter(pipeline(setup, "plain", drop_remainder=True)))
    step = train_step(setup)

    def one_step() -> int:
        float(step(batch_images, targets))
        return int(batch_images.shape[0])

    one_step()
    step_rate, step_cpu = best(one_step, steps)

    detector = Detector.from_file("synthetic")
    image = read_image(SAMPLE)

    def one_image() -> int:
        detector(image)
        return 1

    def one_batch() -> int:
        return len(detector.detect([image] * DEFAULTS.batch))

    one_image()
    detect_rate, detect_cpu = best(one_image, images)
    one_batch()
    batch_rate, batch_cpu = best(one_batch, max(1, images // DEFAULTS.batch))
    x, _ = resize_image(image, detector.meta.img_size, detector.meta.resize)
    raws = model_outputs(detector.model, np.float32(x)[None])
    np.savez(raw_out, *[np.asarray(r) for r in raws])
    return dict(
        onednn=bool(_pywrap_util_port.IsMklEnabled()),
        step_rate=step_rate,
        step_cpu=step_cpu,
        detect_ms=1000 / detect_rate,
        detect_cpu=detect_cpu,
        batch_ms=1000 / batch_rate,
        batch_cpu=batch_cpu,
    )


def run_child(flag: str, args, raw_out: Path) -> dict:
    env = dict(os.environ, TF_ENABLE_ONEDNN_OPTS=flag)
    cmd = [sys.executable, __file__, "--child", str(raw_out), "--data", str(args.data)]
    cmd += ["--steps", str(args.steps), "--images", str(args.images)]
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    from yolo_cli.config import DEFAULTS, datasets_root

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=datasets_root() / "bccd")
    parser.add_argument("--steps", type=int, default=8, help="timed train steps (best)")
    parser.add_argument("--images", type=int, default=20, help="timed detect calls (best)")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.data, args.steps, args.images, args.child)))
        return

    import numpy as np

    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        raw = {flag: Path(tmp) / f"raw{flag}.npz" for flag in ("0", "1")}
        off, on = (run_child(flag, args, raw[flag]) for flag in ("0", "1"))
        with np.load(raw["0"]) as a, np.load(raw["1"]) as b:
            diff = max(float(np.max(np.abs(a[k] - b[k]))) for k in a.files)
    print(
        f"{datetime.date.today()}, {os.cpu_count()} CPU cores (load average {load_before:.1f} at start, "
        f"{os.getloadavg()[0]:.1f} at end); command: {' '.join(sys.argv)}"
    )
    print()
    print("| | TF_ENABLE_ONEDNN_OPTS=0 | TF_ENABLE_ONEDNN_OPTS=1 | on / off |")
    print("| --- | ---: | ---: | ---: |")
    print(f"| oneDNN in use (IsMklEnabled) | {off['onednn']} | {on['onednn']} | |")
    rows = [
        (f"train step, {args.data.name}, images/s (best)", "step_rate", "{:.1f}"),
        ("train step, CPU ms/image", "step_cpu", "{:.0f}"),
        ("detect street_1.jpg, shipped model, ms/image (best)", "detect_ms", "{:.1f}"),
        ("detect, CPU ms/image", "detect_cpu", "{:.1f}"),
        (
            f"detect, batches of {DEFAULTS.batch} (eval's way), ms/image (best)",
            "batch_ms",
            "{:.1f}",
        ),
        (f"detect, batches of {DEFAULTS.batch}, CPU ms/image", "batch_cpu", "{:.1f}"),
    ]
    for label, key, fmt in rows:
        ratio = on[key] / off[key]
        print(f"| {label} | {fmt.format(off[key])} | {fmt.format(on[key])} | {ratio:.2f}× |")
    print(f"| shipped model's raw outputs, max abs difference | | {diff:.2g} | |")


if __name__ == "__main__":
    main()
