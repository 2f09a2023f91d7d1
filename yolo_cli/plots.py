"""The PNG plots a run leaves behind: training history and precision–recall curves."""

from __future__ import annotations

import math
from pathlib import Path

from yolo_cli.fileio import atomic_path


def _figure(ncols: int, size: tuple[float, float]):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(1, ncols, figsize=size)


def _save(fig, path: Path, dpi: int) -> None:
    """Write the figure atomically (:func:`yolo_cli.fileio.atomic_path`) and free it."""
    import matplotlib.pyplot as plt

    try:
        fig.tight_layout()
        with atomic_path(path, suffix=path.suffix) as tmp:
            fig.savefig(tmp, dpi=dpi)
    finally:
        plt.close(fig)


def plot_history(rows: list[dict], path: Path) -> None:
    """Loss (train, val) and validation mAP@0.5 and mAP@[.5:.95] per epoch from
    ``history.csv`` rows; the val curves join the epochs that were validated."""
    fig, ax = _figure(2, (9, 3.5))
    epochs = [r["epoch"] for r in rows]
    scored = [r for r in rows if math.isfinite(r["val_loss"])]
    at = [r["epoch"] for r in scored]
    ax[0].plot(epochs, [r["train_loss"] for r in rows], label="train")
    ax[0].plot(at, [r["val_loss"] for r in scored], label="val")
    ax[0].set(xlabel="epoch", ylabel="loss per image", title="loss")
    ax[0].legend()
    ax[1].plot(at, [r["val_map50"] for r in scored], label="mAP@0.5")
    ax[1].plot(at, [r.get("val_map", math.nan) for r in scored], label="mAP@[.5:.95]")
    ax[1].set(xlabel="epoch", ylabel="mAP", title="validation mAP", ylim=(0, 1))
    ax[1].legend()
    _save(fig, path, dpi=80)


def plot_pr_curves(result, path: Path) -> None:
    """Precision–recall curve per class of an :class:`~yolo_cli.metrics.EvalResult` at its
    first IoU threshold."""
    fig, ax = _figure(1, (5, 4))
    for k, (recall, precision) in enumerate(result.curves):
        if len(recall):
            ax.plot(recall, precision, label=f"{result.names[k]} AP {result.ap[k, 0]:.3f}")
    iou = float(result.iou_thresholds[0])
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02))
    ax.set_title(f"precision–recall @ IoU {iou:g}  (mAP {result.map:.3f})")
    ax.legend(loc="lower left", fontsize=8)
    _save(fig, path, dpi=90)
