"""What ``yolo train`` takes: :class:`TrainConfig`, checked in full when it is made.

Every numeric field is checked against its range in :data:`yolo_cli.config.LIMITS` (NaN and
infinities are never in range), so a Python caller meets the same refusals as the command
line, before any work: a :class:`~yolo_cli.errors.YoloError` naming the option.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from yolo_cli.config import DEFAULTS, LIMITS
from yolo_cli.errors import YoloError

# command-line spellings of the fields whose option name is not the field's own
_OPTION_NAMES = {"num_anchors": "--anchors", "synth_n": "synth_n"}
_INTS = ("num_anchors", "epochs", "batch", "seed", "freeze", "synth_n", "max_steps", "patience")
_FLOATS = ("lr", "warmup_epochs", "width", "lambda_obj", "minutes")
_OPTIONAL = ("max_steps", "minutes")
_RANGES = {"synth_n": LIMITS.synth_scenes}


@dataclass(frozen=True)
class TrainConfig:
    """Everything ``yolo train`` takes. ``data=None`` means the synthetic street scenes
    (``synth_n`` of them). ``max_steps`` caps the steps of an epoch (quick checks);
    ``minutes`` is a wall-clock budget that re-plans the epoch count after every epoch;
    ``patience`` stops the run when val mAP@0.5 has not improved for that many epochs (0: off).
    """

    data: str | None = None
    out: str | None = None
    num_anchors: int = DEFAULTS.num_anchors
    epochs: int = DEFAULTS.epochs
    img_size: int = DEFAULTS.img_size
    batch: int = DEFAULTS.batch
    lr: float = DEFAULTS.lr
    warmup_epochs: float = DEFAULTS.warmup_epochs
    seed: int = DEFAULTS.seed
    width: float = DEFAULTS.width
    lambda_obj: float = DEFAULTS.lambda_obj
    augment: bool = True
    device: str = "auto"
    strategy: str = "auto"
    weights: str | None = None
    freeze: int = 0
    synth_n: int = DEFAULTS.synth_scenes
    max_steps: int | None = None
    minutes: float | None = None
    patience: int = DEFAULTS.patience

    def __post_init__(self):
        for name in ("data", "out", "weights"):
            value = getattr(self, name)
            if isinstance(value, Path):
                object.__setattr__(self, name, str(value))
        check_config(self)


def option_name(field: str) -> str:
    """The command-line spelling of a :class:`TrainConfig` field (``lambda_obj`` → ``--lambda-obj``)."""
    return _OPTION_NAMES.get(field, "--" + field.replace("_", "-"))


def check_config(cfg: TrainConfig) -> None:
    """Raise :class:`YoloError` (``--lr nan: expected a number in (0, 1]``) for the first field
    of ``cfg`` that has the wrong type or lies outside its range."""
    from yolo_cli.device import STRATEGIES, parse_device

    for name in (*_INTS, *_FLOATS):
        value = getattr(cfg, name)
        if value is None and name in _OPTIONAL:
            continue
        _check_number(name, value, name in _INTS)
    lo, hi = LIMITS.img_size
    size = cfg.img_size
    if not _is_int(size) or not lo <= size <= hi or size % DEFAULTS.stride:
        raise YoloError(
            f"--img-size {size!r}: expected a multiple of {DEFAULTS.stride} in {lo}..{hi}"
        )
    for name in ("data", "out", "weights"):
        value = getattr(cfg, name)
        if value is not None and (not isinstance(value, str) or not value):
            raise YoloError(f"{option_name(name)} {value!r}: expected a path")
    if not isinstance(cfg.augment, bool):
        raise YoloError(f"augment {cfg.augment!r}: expected true or false")
    if not isinstance(cfg.device, str):
        raise YoloError(f"--device {cfg.device!r}: expected a device name")
    parse_device(cfg.device)
    if cfg.strategy not in STRATEGIES:
        raise YoloError(f"--strategy {cfg.strategy!r}: expected one of {'|'.join(STRATEGIES)}")


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _check_number(name: str, value, integer: bool) -> None:
    limits = _RANGES.get(name) or getattr(LIMITS, name)
    kind = "a whole number" if integer else "a number"
    ok = _is_int(value) if integer else (_is_int(value) or isinstance(value, float))
    if not ok or (not integer and not math.isfinite(value)) or not limits.holds(value):
        raise YoloError(f"{option_name(name)} {value!r}: expected {kind} in {limits.describe()}")
