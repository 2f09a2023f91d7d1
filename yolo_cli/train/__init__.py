"""Training a detector: ``train(cfg, hooks) → TrainResult`` and ``resume(run_dir, hooks, …)``.

- :mod:`~yolo_cli.train.options`: :class:`TrainConfig`, every option checked when it is made;
- :mod:`~yolo_cli.train.recipe`: what is trained — heads, network, loss, batches, LR schedule;
- :mod:`~yolo_cli.train.loop`: the loop, its hooks, signals, budget and outcomes;
- :mod:`~yolo_cli.train.checkpoint`: ``last.keras`` with the run state inside, one atomic file;
- :mod:`~yolo_cli.train.logs`: ``history.csv``, ``history.png``, TensorBoard event files.
"""

from yolo_cli.train.loop import (
    Outcome,
    Trainer,
    TrainHooks,
    TrainResult,
    build_trainer,
    epochs_in_budget,
    resume,
    train,
)
from yolo_cli.train.options import TrainConfig
from yolo_cli.train.recipe import learning_rate, scaled_box_shapes

__all__ = [
    "Outcome",
    "TrainConfig",
    "TrainHooks",
    "TrainResult",
    "Trainer",
    "build_trainer",
    "epochs_in_budget",
    "learning_rate",
    "resume",
    "scaled_box_shapes",
    "train",
]
