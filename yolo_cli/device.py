"""Where work runs: device choice (``auto|cpu|gpu|gpu:N``) and the tf.distribute strategy."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
from dataclasses import dataclass

from yolo_cli.config import DEFAULTS
from yolo_cli.errors import YoloError

log = logging.getLogger(__name__)

DEVICE_CHOICES = "auto|cpu|gpu|gpu:N|N"
STRATEGIES = ("auto", "none", "mirrored", "multiworker")


@dataclass(frozen=True)
class Device:
    """A resolved device: ``name`` is a TensorFlow device string such as ``/GPU:0``."""

    name: str
    kind: str  # "cpu" or "gpu"

    def scope(self):
        import tensorflow as tf

        return tf.device(self.name)


def device_scope(device: Device | None):
    """``device``'s scope, or no scope at all for ``None`` (TensorFlow places ops itself)."""
    return device.scope() if device is not None else contextlib.nullcontext()


def parse_device(spec: str) -> tuple[str, int | None]:
    """``"auto" | "cpu" | "gpu" | "gpu:N" | "N"`` → (kind, index); raises YoloError otherwise.

    ``N`` alone is GPU N, as ultralytics spells it (``--device 0``).
    """
    spec = spec.strip().lower()
    if spec in ("auto", "cpu", "gpu"):
        return spec, None
    m = re.fullmatch(r"(?:(?:gpu|cuda):)?(\d+)", spec)
    if m:
        return "gpu", int(m.group(1))
    raise YoloError(f"--device {spec!r}: expected one of {DEVICE_CHOICES}")


def select_device(spec: str = DEFAULTS.device) -> Device:
    """Resolve ``--device``: auto takes the first GPU TensorFlow lists, else the CPU.

    GPU memory growth is turned on so one process does not take the whole card. Asking for a
    GPU that is not there raises :class:`YoloError`.
    """
    import tensorflow as tf

    kind, index = parse_device(spec)
    gpus = tf.config.list_physical_devices("GPU")
    if kind == "cpu" or (kind == "auto" and not gpus):
        device = Device("/CPU:0", "cpu")
    else:
        index = index or 0
        if index >= len(gpus):
            found = f"{len(gpus)} GPU(s)" if gpus else "no GPU"
            raise YoloError(f"--device {spec}: TensorFlow sees {found} on this machine")
        for gpu in gpus:
            try:
                tf.config.experimental.set_memory_growth(gpu, True)
            except RuntimeError:
                pass  # already initialised: growth can only be set before first use
        device = Device(f"/GPU:{index}", "gpu")
    log.info("device: %s", device.name)
    return device


def check_strategy(name: str) -> None:
    """Raise :class:`YoloError` unless ``name`` is one of :data:`STRATEGIES`."""
    if name not in STRATEGIES:
        raise YoloError(f"--strategy {name!r}: expected one of {'|'.join(STRATEGIES)}")


def select_strategy(name: str = DEFAULTS.strategy, device: Device | None = None):
    """The tf.distribute strategy for training.

    auto: MirroredStrategy when more than one GPU is visible, else the default (one device).
    none: the default strategy on ``device``. mirrored: MirroredStrategy over every visible GPU,
    or over every logical CPU device when there is no GPU. multiworker:
    MultiWorkerMirroredStrategy, configured by the ``TF_CONFIG`` environment variable.
    """
    import tensorflow as tf

    check_strategy(name)
    if name == "multiworker":
        # must come before anything initialises TensorFlow's context (collective ops)
        if "TF_CONFIG" not in os.environ:
            raise YoloError("--strategy multiworker needs TF_CONFIG (cluster and task) set")
        try:
            json.loads(os.environ["TF_CONFIG"])
        except json.JSONDecodeError as e:
            raise YoloError(f"TF_CONFIG is not valid JSON: {e}") from None
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_physical_devices("GPU")
    if name == "auto":
        name = "mirrored" if len(gpus) > 1 else "none"
    if name == "none":
        return tf.distribute.OneDeviceStrategy(device.name if device else "/CPU:0")
    devices = [d.name for d in tf.config.list_logical_devices("GPU")]
    return tf.distribute.MirroredStrategy(
        devices or [d.name for d in tf.config.list_logical_devices("CPU")]
    )


def split_cpu(n: int) -> None:
    """Expose the physical CPU as ``n`` logical devices (for MirroredStrategy tests and runs).

    Must run before TensorFlow initialises its devices.
    """
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(n)]
    )
