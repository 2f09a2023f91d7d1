"""A tiny training setup shared by the training tests: 64-px synthetic scenes, a quarter-width
network, two steps an epoch."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SIZE = 64


def write_tiny_scenes(folder: Path, n: int = 24, seed: int = 5, size: int = SIZE) -> Path:
    from yolo_cli.data.synth import write_synthetic

    return write_synthetic(folder, n=n, seed=seed, size=size)


def tiny_options(data, out=None, **kw) -> dict:
    """TrainConfig fields of a run that takes a few seconds an epoch on a CPU."""
    options = dict(
        data=str(data),
        out=str(out) if out is not None else None,
        epochs=2,
        img_size=SIZE,
        batch=4,
        width=0.25,
        num_anchors=3,
        max_steps=2,
        device="cpu",
        strategy="none",
        lr=2e-3,
    )
    options.update(kw)
    return options


def tiny_config(data, out=None, **kw):
    from yolo_cli.train import TrainConfig

    return TrainConfig(**tiny_options(data, out, **kw))


def cli_args(options: dict) -> list[str]:
    """``yolo train`` arguments for :func:`tiny_options`-style fields."""
    args = ["train"]
    for k, v in options.items():
        if v is not None:
            args += ["--" + k.replace("_", "-"), str(v)]
    return args


def weights_of(path: Path) -> list[np.ndarray]:
    """Every weight array of a model file, in order."""
    from yolo_cli.modelfile import load_model

    model, _ = load_model(path)
    return model.get_weights()


def assert_bit_equal(a: Path, b: Path) -> None:
    wa, wb = weights_of(a), weights_of(b)
    assert len(wa) == len(wb) > 0
    for i, (x, y) in enumerate(zip(wa, wb)):
        assert np.array_equal(x, y), f"weight {i} differs by up to {np.abs(x - y).max()}"


def leftovers(folder: Path) -> list[str]:
    """Temporary files a write left behind in ``folder``."""
    return sorted(p.name for p in folder.rglob("*") if ".tmp" in p.name)


def replace_entry(archive_path: Path, name: str, data: bytes | None) -> None:
    """Rewrite a zip archive with entry ``name`` replaced by ``data`` (dropped when None)."""
    with zipfile.ZipFile(archive_path) as src:
        entries = [(i, src.read(i.filename)) for i in src.infolist() if i.filename != name]
    with zipfile.ZipFile(archive_path, "w") as dst:
        for info, content in entries:
            dst.writestr(info, content)
        if data is not None:
            dst.writestr(name, data)


def yolo_process(args: list[str], **kw) -> subprocess.Popen:
    """``yolo ARGS`` in a child process (stdout and stderr piped)."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.Popen(
        [sys.executable, "-m", "yolo_cli.cli", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )
