"""What ``yolo train`` takes: :class:`TrainConfig`, checked in full when it is made.

Every numeric field is checked against its range in :data:`yolo_cli.config.LIMITS` (NaN and
infinities are never in range), so a Python caller meets the same refusals as the command
line, before any work: a :class:`~yolo_cli.errors.YoloError` naming the option.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from yolo_cli.config import DEFAULTS, LIMITS, check_img_size
from yolo_cli.errors import YoloError
from yolo_cli.loss import LOSSES
from yolo_cli.targets import RULES

# command-line spellings of the fields whose option name is not the field's own
_OPTION_NAMES = {"synth_n": "synth_n"}
_INTS = (
    "num_anchors", "epochs", "batch", "seed", "freeze", "synth_n", "max_steps", "patience",
    "heads", "close_mosaic",
)  # fmt: skip
_FLOATS = ("lr", "warmup_epochs", "width", "lambda_obj", "minutes", "mosaic", "val_share")
_OPTIONAL = ("max_steps", "minutes", "num_anchors", "lr")
_CHOICES = {"loss": LOSSES, "assign": RULES}
_RANGES = {"synth_n": LIMITS.synth_scenes}


@dataclass(frozen=True)
class TrainConfig:
    """Everything ``yolo train`` takes. ``data=None`` means the synthetic street scenes
    (``synth_n`` of them); ``img_size`` ``None`` is the ``weights`` model's input size, else
    :data:`DEFAULTS.img_size`; ``lr`` ``None`` is chosen from the class count
    (:func:`yolo_cli.train.recipe.peak_lr`). ``max_steps`` caps the steps of an epoch (quick
    checks); ``minutes`` is a wall-clock budget that re-plans the epoch count after every epoch;
    ``patience`` stops the run when val fitness has not improved for that many epochs (0: off);
    ``val_share`` bounds validation's share of the work (:func:`yolo_cli.train.recipe.validates`).

    The recipe (:mod:`yolo_cli.train.recipe`): ``heads`` grids (1: the course's stride 32; 2:
    strides 16 and 32; 3: 8, 16, 32) sharing ``num_anchors`` k-means anchors (``None``: 5 for
    one grid, 3 a head for several); ``loss`` ``course`` or ``iou`` (:mod:`yolo_cli.loss`);
    ``assign`` ``best`` or ``ratio`` (:mod:`yolo_cli.targets`); ``mosaic`` the share of training
    images made a mosaic of four, off for the last ``close_mosaic`` epochs; ``ema`` validates and
    saves an exponential moving average of the weights; ``spp`` pools the coarsest features at
    three widths (:func:`yolo_cli.model.build_model`). ``lambda_obj`` weighs the course
    loss's assigned p_c error.
    """

    data: str | None = None
    out: str | None = None
    num_anchors: int | None = None
    epochs: int = DEFAULTS.epochs
    img_size: int | None = None
    batch: int = DEFAULTS.batch
    lr: float | None = None
    warmup_epochs: float = DEFAULTS.warmup_epochs
    seed: int = DEFAULTS.seed
    width: float = DEFAULTS.width
    lambda_obj: float = DEFAULTS.lambda_obj
    augment: bool = True
    device: str = DEFAULTS.device
    strategy: str = DEFAULTS.strategy
    weights: str | None = None
    freeze: int = DEFAULTS.freeze
    synth_n: int = DEFAULTS.synth_scenes
    max_steps: int | None = None
    minutes: float | None = None
    patience: int = DEFAULTS.patience
    val_share: float = DEFAULTS.val_share
    heads: int = DEFAULTS.heads
    loss: str = DEFAULTS.loss
    assign: str = DEFAULTS.assign
    mosaic: float = DEFAULTS.mosaic_p
    close_mosaic: int = DEFAULTS.close_mosaic
    ema: bool = DEFAULTS.ema
    spp: bool = DEFAULTS.spp

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
    from yolo_cli.device import check_strategy, parse_device

    for name in (*_INTS, *_FLOATS):
        value = getattr(cfg, name)
        if value is None and name in _OPTIONAL:
            continue
        _check_number(name, value, name in _INTS)
    if cfg.img_size is not None:
        check_img_size(cfg.img_size)
    for name in ("data", "out", "weights"):
        value = getattr(cfg, name)
        if value is not None and (not isinstance(value, str) or not value):
            raise YoloError(f"{option_name(name)} {value!r}: expected a path")
    for name in ("augment", "ema", "spp"):
        if not isinstance(getattr(cfg, name), bool):
            raise YoloError(f"{name} {getattr(cfg, name)!r}: expected true or false")
    for name, choices in _CHOICES.items():
        if getattr(cfg, name) not in choices:
            raise YoloError(
                f"{option_name(name)} {getattr(cfg, name)!r}: expected one of {'|'.join(choices)}"
            )
    if not isinstance(cfg.device, str):
        raise YoloError(f"--device {cfg.device!r}: expected a device name")
    parse_device(cfg.device)
    check_strategy(cfg.strategy)


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _check_number(name: str, value, integer: bool) -> None:
    limits = _RANGES.get(name) or getattr(LIMITS, name)
    if not integer:
        limits.check(option_name(name), value)
    elif not (_is_int(value) and limits.holds(value)):
        raise YoloError(
            f"{option_name(name)} {value!r}: expected a whole number in {limits.describe()}"
        )
