"""What a run leaves for people to read: ``history.csv``, ``history.png`` and TensorBoard event
files (``tensorboard --logdir runs/train``).

The event files are written with TensorFlow's own summary writer (``tf.summary.write`` with the
scalar and image plugins' metadata, which needs no TensorBoard package to write; viewing them
does). Tags: ``train/loss`` and one ``train/<part>`` per loss part, ``train/lr``, ``val/loss``,
``val/mAP50`` per epoch; ``train/loss_step`` per training step (global step); ``val/images``:
a few validation images with the predictions above the detection threshold drawn, at each epoch
that gave ``best.keras`` (the step shows which weights it holds).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from yolo_cli.fileio import write_atomic
from yolo_cli.plots import plot_history


def history_fields(parts) -> tuple[str, ...]:
    """``history.csv``'s columns for a loss with these parts."""
    return ("epoch", "lr", "train_loss", *parts, "val_loss", "val_map50", "val_map")


def write_history(run_dir: Path, rows: list[dict], parts) -> None:
    """``history.csv`` (one row per epoch) and its plot ``history.png``, both atomically."""
    columns = history_fields(parts)
    lines = [",".join(columns)]
    for r in rows:
        values = (r.get(k, math.nan) for k in columns)  # val_map: absent from older runs' rows
        lines.append(",".join(f"{v:.6g}" if isinstance(v, float) else str(v) for v in values))
    write_atomic(run_dir / "history.csv", "\n".join(lines) + "\n")
    plot_history(rows, run_dir / "history.png")


class Board:
    """TensorBoard event files in ``run_dir``; the file is opened at the first write, so a run
    that saved nothing leaves none. Steps of ``train/loss_step`` are buffered until
    :meth:`flush_steps`, called where the run saves its checkpoint, so the file holds the steps
    the checkpoint holds."""

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir
        self._writer = None
        self._steps: list[tuple[int, float]] = []

    def _write(self):
        import tensorflow as tf

        if self._writer is None:
            self._writer = tf.summary.create_file_writer(str(self.run_dir))
        return self._writer.as_default()

    def step(self, global_step: int, loss: float) -> None:
        """Remember one training step's loss."""
        self._steps.append((global_step, loss))

    def flush_steps(self) -> None:
        """Write the remembered steps."""
        if not self._steps:
            return
        with self._write():
            for global_step, loss in self._steps:
                _scalar("train/loss_step", loss, global_step)
        self._steps.clear()
        self._writer.flush()

    def epoch(self, row: dict, parts, images: list[tuple[str, np.ndarray]]) -> None:
        """One epoch's history row as scalars (step = epoch number), and ``images``: ``(name,
        (H, W, 3) uint8 RGB)`` pairs with predictions already drawn."""
        import tensorflow as tf

        self.flush_steps()
        epoch = int(row["epoch"])
        with self._write():
            _scalar("train/loss", row["train_loss"], epoch)
            for p in parts:
                _scalar(f"train/{p}", row[p], epoch)
            _scalar("train/lr", row["lr"], epoch)
            tags = (("val_loss", "val/loss"), ("val_map50", "val/mAP50"), ("val_map", "val/mAP"))
            for key, tag in tags:
                if math.isfinite(row[key]):
                    _scalar(tag, row[key], epoch)
            for i, (name, image) in enumerate(images):
                png = tf.io.encode_png(np.ascontiguousarray(image, np.uint8))
                h, w = image.shape[:2]
                tensor = tf.stack([tf.as_string(w), tf.as_string(h), png])
                tf.summary.write(
                    f"val/images/{i}", tensor, step=epoch, metadata=_metadata("images", name)
                )
        self._writer.flush()

    def close(self) -> None:
        """Close the file; steps not flushed (a run stopped without saving) are dropped."""
        self._steps.clear()
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def _metadata(plugin: str, description: str = ""):
    from tensorflow.core.framework import summary_pb2

    return summary_pb2.SummaryMetadata(
        summary_description=description,
        plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name=plugin),
    )


def _scalar(tag: str, value: float, step: int) -> None:
    import tensorflow as tf

    value = tf.constant(float(value), tf.float32)
    tf.summary.write(tag, value, step=step, metadata=_metadata("scalars"))
