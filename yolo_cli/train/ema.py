"""An exponential moving average of a network's weights (YOLOv5's ``ModelEMA``).

After every optimizer step each average moves toward its weight, ``a ← d·a + (1 − d)·w``, with
``d = min(decay, 1 − 1 / (1 + span · steps))``: the average spans about the last ``span`` share
of the steps so far (``1 / (1 − d)`` steps), up to ``1 / (1 − decay)``. YOLOv5's ramp,
``decay · (1 − exp(−steps / 2000))``, is sized for COCO: at the end of its 300 epochs (~550k
steps) it spans 10k steps, about 2 % of them, but over the 1–3k steps of a 30-minute CPU run it
stays near ``d = 0.7``, an average of three or four steps. Every weight is averaged, BatchNorm's
moving statistics included. Validation and ``best.keras`` use the averages (they are steadier
than the weights of any one step); training goes on from the weights themselves.

The averages are optimizer variables (:meth:`keras.optimizers.Optimizer.add_variable`), so
``last.keras`` saves and a resume restores them with the rest of the optimizer state.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from yolo_cli.config import DEFAULTS


class WeightAverage:
    """The averages of ``model.weights``, kept in ``optimizer`` (call under the strategy's
    scope, after ``optimizer.build`` and before any weights are loaded)."""

    def __init__(
        self, model, optimizer, decay: float = DEFAULTS.ema_decay, span: float = DEFAULTS.ema_span
    ):
        self.model, self.optimizer = model, optimizer
        self.decay, self.span = decay, span
        self.averages = [
            optimizer.add_variable(w.shape, dtype=w.dtype, name=f"ema_{i}")
            for i, w in enumerate(model.weights)
        ]

    def update(self) -> None:
        """Move every average one step toward its weight (inside the training step's graph,
        after the optimizer has counted the step)."""
        import tensorflow as tf

        steps = tf.cast(self.optimizer.iterations, tf.float32)
        d = tf.minimum(self.decay, 1.0 - 1.0 / (1.0 + self.span * steps))
        for a, w in zip(self.averages, self.model.weights):
            a.assign(d * a + (1.0 - d) * tf.cast(w, a.dtype))

    @contextmanager
    def applied(self) -> Iterator[None]:
        """The network holds the averages for the ``with`` block, its own weights after."""
        own = [w.numpy() for w in self.model.weights]
        for w, a in zip(self.model.weights, self.averages):
            w.assign(a)
        try:
            yield
        finally:
            for w, value in zip(self.model.weights, own):
                w.assign(value)
