"""Darknet ``.cfg`` + ``.weights`` → the project's model file (``yolo import``).

The network is rebuilt from stock Keras layers only (the model file loads in safe mode) and
computes what Darknet computes, to float32 round-off:

- input ``(batch, H, W, 3)`` RGB 0..255; a ``Rescaling(1/255)`` layer gives Darknet's 0..1.
- ``[convolutional]``: ``pad=1`` pads ``size // 2`` cells on every side. Keras ``same`` pads
  only right/bottom at stride 2 (and pads differently for even sizes), so every convolution
  but a stride-1 odd-sized one gets an explicit ``ZeroPadding2D`` and ``valid``. ``groups``
  equal to the input channels becomes a ``DepthwiseConv2D``. Batch norm keeps Darknet's
  epsilon 1e-5; ``leaky`` is Darknet's slope 0.1.
- ``[maxpool]``: Darknet pads ``padding`` cells (default ``size − 1``), ``padding // 2`` of them
  left/top, and leaves them out of the max. Keras ``same`` pooling does the same wherever its
  split of the padding agrees; elsewhere the edge rows and columns are repeated instead (a
  window that reaches past an edge always holds the edge cell, so repeating it leaves the max
  unchanged).
- ``[route]`` ``groups``/``group_id``: a channel slice made of Reshape + Cropping3D.
- ``[dropout]`` is the identity at inference.
- ``[yolo]``/``[region]``: each becomes one model output ``(batch, S, S, B, 5 + C)`` in the
  project's slot layout ``[p_c, t_x, t_y, t_w, t_h, class logits…]``. Darknet's slots are
  ``[t_x, t_y, t_w, t_h, obj, classes…]``, so the head convolution's output channels are
  permuted as its weights load (:func:`head_channel_order`); no extra op runs.

``.weights``: int32 major, minor, revision; the "seen" count (uint64 when ``major·10 + minor
≥ 2`` and both are below 1000, else int32); then for each ``[convolutional]`` in cfg order,
float32: biases (batch norm's beta), [batch norm gamma, mean, variance,] kernel
``(out, in/groups, k, k)``.

Every problem with the files raises :class:`YoloError` with one line that names the file, the
section and its line (``model.cfg:57: [convolutional] groups=3 does not divide 16 input
channels``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from yolo_cli.config import DARKNET_CONF, LIMITS
from yolo_cli.errors import YoloError
from yolo_cli.modelfile import Head, ModelMeta
from yolo_cli.summary import conv_output_size

LEAKY_SLOPE = 0.1
BN_EPSILON = 1e-5

SECTION_NAMES = {
    "net": "net",
    "network": "net",
    "convolutional": "convolutional",
    "conv": "convolutional",
    "maxpool": "maxpool",
    "max": "maxpool",
    "route": "route",
    "shortcut": "shortcut",
    "upsample": "upsample",
    "dropout": "dropout",
    "yolo": "yolo",
    "region": "region",
}
SUPPORTED_SECTIONS = (
    "net",
    "convolutional",
    "maxpool",
    "route",
    "shortcut",
    "upsample",
    "dropout",
    "yolo",
    "region",
)

# Darknet activation name → Keras activation (None: linear, no layer).
ACTIVATIONS = {
    "linear": None,
    "leaky": "leaky",
    "logistic": "sigmoid",
    "relu": "relu",
    "mish": "mish",
    "swish": "silu",
}

# Keys that change what a layer computes; any key in neither table is refused, so a cfg
# feature this importer does not implement can never be silently ignored.
_KEYS = {
    "convolutional": {
        "filters",
        "size",
        "stride",
        "pad",
        "padding",
        "groups",
        "batch_normalize",
        "activation",
    },
    "maxpool": {"size", "stride", "padding"},
    "route": {"layers", "groups", "group_id"},
    "shortcut": {"from", "activation"},
    "upsample": {"stride", "scale"},
    "dropout": set(),
    "yolo": {"mask", "anchors", "classes", "num", "scale_x_y", "new_coords"},
    "region": {"anchors", "classes", "num", "coords", "softmax"},
}
# Keys that only steer training (loss, augmentation, learning rate); read by no one here.
_LAYER_TRAINING_KEYS = {
    "stopbackward",
    "onlyforward",
    "dont_update",
    "burnin_update",
    "learning_rate",
}
_TRAINING_KEYS = {
    "dropout": {"probability", "dropblock", "dropblock_size_rel", "dropblock_size_abs"},
    "yolo": {
        "jitter", "ignore_thresh", "truth_thresh", "iou_thresh", "random", "max", "resize",
        "iou_loss", "iou_normalizer", "cls_normalizer", "obj_normalizer", "max_delta",
        "nms_kind", "beta_nms", "focal_loss", "label_smooth_eps", "counters_per_class",
        "objectness_smooth",
    },
    "region": {
        "jitter", "rescore", "object_scale", "noobject_scale", "class_scale", "coord_scale",
        "mask_scale", "bias_match", "absolute", "thresh", "random", "log", "sqrt", "max",
        "focal_loss", "classfix",
    },
}  # fmt: skip


@dataclass(frozen=True)
class Option:
    """One ``key=value`` line of a cfg: the value as written (stripped) and its line number."""

    value: str
    line: int


@dataclass
class Section:
    """One ``[kind]`` of a cfg; ``kind`` is canonical (``conv`` → ``convolutional``)."""

    kind: str
    line: int
    options: dict[str, Option] = field(default_factory=dict)


def parse_cfg(path: str | Path) -> list[Section]:
    """Read a Darknet cfg into its sections, in file order; the first is ``[net]``.

    Comments start with ``#`` or ``;``; spaces around ``=`` and after commas are ignored.
    Raises :class:`YoloError` (``file:line: problem``) for a missing or malformed file, an
    unsupported section or a repeated key.
    """
    path = Path(path)
    if not path.is_file():
        raise YoloError(f"{path}: cfg file not found")
    if path.stat().st_size > LIMITS.model_json_bytes:
        raise YoloError(f"{path}: over {LIMITS.model_json_bytes:,} bytes; not a Darknet cfg")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise YoloError(f"{path}: not a text file; not a Darknet cfg") from None
    sections: list[Section] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        line = line.split("#", 1)[0].strip()
        if line.startswith("["):
            name = line[1:-1].strip().lower() if line.endswith("]") else ""
            if not name:
                raise YoloError(f"{path}:{number}: malformed section header {raw.strip()!r}")
            if name not in SECTION_NAMES:
                raise YoloError(
                    f"{path}:{number}: [{name}] is not supported "
                    f"(yolo import reads {', '.join(SUPPORTED_SECTIONS)})"
                )
            sections.append(Section(SECTION_NAMES[name], number))
            continue
        key, sep, value = (part.strip() for part in line.partition("="))
        if not sections:
            raise YoloError(f"{path}:{number}: {raw.strip()!r} comes before any [section]")
        section = sections[-1]
        if not sep or not key or not value:
            raise YoloError(
                f"{path}:{number}: [{section.kind}] malformed line {raw.strip()!r} "
                "(expected key=value)"
            )
        if key in section.options:
            first = section.options[key].line
            raise YoloError(
                f"{path}:{number}: [{section.kind}] {key}= repeats (first at line {first})"
            )
        section.options[key] = Option(value, number)
    if not sections or sections[0].kind != "net":
        raise YoloError(f"{path}: the first section must be [net]; not a Darknet cfg")
    for section in sections[1:]:
        if section.kind == "net":
            raise YoloError(f"{path}:{section.line}: [net] may only open the cfg")
    if len(sections) > LIMITS.model_layers:
        raise YoloError(f"{path}: {len(sections) - 1} layers (at most {LIMITS.model_layers})")
    return sections


class _Options:
    """Typed reads of one section's options; each problem is a :class:`YoloError` naming
    ``cfg:line: [section]`` (the key's own line where a key is at fault)."""

    def __init__(self, cfg: Path, section: Section):
        self.cfg, self.section = cfg, section

    def error(self, problem: str, key: str | None = None) -> YoloError:
        option = self.section.options.get(key) if key else None
        line = option.line if option else self.section.line
        return YoloError(f"{self.cfg}:{line}: [{self.section.kind}] {problem}")

    def check_keys(self) -> None:
        kind = self.section.kind
        allowed = _KEYS[kind] | _LAYER_TRAINING_KEYS | _TRAINING_KEYS.get(kind, set())
        for key in self.section.options:
            if key not in allowed:
                raise self.error(f"{key}= is not supported by yolo import", key)

    def has(self, key: str) -> bool:
        return key in self.section.options

    def _raw(self, key: str, required: bool) -> str | None:
        option = self.section.options.get(key)
        if option is None and required:
            raise self.error(f"{key}= is missing")
        return option.value if option else None

    def int(self, key: str, default: int | None = None, lo: int = 0, hi: int | None = None) -> int:
        """``key`` as a whole number in ``lo..hi``; ``default`` when absent (None: required)."""
        raw = self._raw(key, required=default is None)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise self.error(f"{key}={raw} is not a whole number", key) from None
        self._check_range(key, raw, value, lo, hi)
        return value

    def float(self, key: str, default: float, lo: float, hi: float) -> float:
        raw = self._raw(key, required=False)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise self.error(f"{key}={raw} is not a number", key) from None
        self._check_range(key, raw, value, lo, hi)
        return value

    def _check_range(self, key, raw, value, lo, hi) -> None:
        if value < lo or (hi is not None and value > hi) or value != value:
            span = f"{lo}..{hi}" if hi is not None else f"at least {lo}"
            raise self.error(f"{key}={raw} is out of range ({span})", key)

    def numbers(self, key: str, kind: type) -> list:
        """A comma-separated list (a trailing comma is allowed); required."""
        raw = self._raw(key, required=True)
        parts = [p.strip() for p in raw.split(",")]
        if parts and not parts[-1]:
            parts.pop()
        try:
            return [kind(p) for p in parts]
        except ValueError:
            what = "whole numbers" if kind is int else "numbers"
            raise self.error(f"{key}={raw} is not a list of {what}", key) from None

    def activation(self, default: str) -> str:
        name = self._raw("activation", required=False) or default
        if name not in ACTIVATIONS:
            raise self.error(
                f"activation={name} is not supported (one of {', '.join(ACTIVATIONS)})",
                "activation",
            )
        return name


@dataclass
class _Conv:
    """A ``[convolutional]`` whose weights the ``.weights`` file holds, in cfg order."""

    opts: _Options
    filters: int
    in_per_group: int
    size: int
    groups: int
    has_bn: bool
    activation: str
    layer: object = None  # keras Conv2D or DepthwiseConv2D
    batch_norm: object = None  # keras BatchNormalization
    order: np.ndarray | None = None  # output-channel order when it feeds a head

    @property
    def depthwise(self) -> bool:
        return self.in_per_group == 1 and self.groups > 1

    @property
    def count(self) -> int:
        """float32 values in the weights file: biases, [BN ×3,] kernel."""
        per_filter = 4 if self.has_bn else 1
        return self.filters * (per_filter + self.in_per_group * self.size * self.size)


@dataclass(frozen=True)
class WeightsHeader:
    """The start of a ``.weights`` file: version, images seen in training, where floats begin."""

    major: int
    minor: int
    revision: int
    seen: int
    offset: int
    size: int

    @property
    def floats(self) -> int:
        return (self.size - self.offset) // 4


def read_weights_header(path: str | Path) -> WeightsHeader:
    """Version and ``seen`` count of a Darknet ``.weights`` file; raises :class:`YoloError`."""
    path = Path(path)
    if not path.is_file():
        raise YoloError(f"{path}: weights file not found")
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(20)
    if len(head) < 16:
        raise YoloError(f"{path}: {size} bytes, too short for a Darknet weights header")
    major, minor, revision = (int(v) for v in np.frombuffer(head[:12], "<i4"))
    if (major * 10 + minor) >= 2 and major < 1000 and minor < 1000:
        if len(head) < 20:
            raise YoloError(f"{path}: {size} bytes, too short for a Darknet weights header")
        seen, offset = int(np.frombuffer(head[12:20], "<u8")[0]), 20
    else:
        seen, offset = int(np.frombuffer(head[12:16], "<i4")[0]), 16
    return WeightsHeader(major, minor, revision, seen, offset, size)


def head_channel_order(anchors: int, classes: int) -> np.ndarray:
    """Output-channel order for a head convolution.

    Darknet's channel ``b·(5 + C) + j`` holds slot ``j`` of ``[t_x, t_y, t_w, t_h, obj,
    classes…]`` for anchor ``b``; the project's slots are ``[p_c, t_x, t_y, t_w, t_h,
    classes…]``. New channel ``i`` takes Darknet's channel ``order[i]``: ``(B·(5 + C),)`` ints.
    """
    slot = np.array([4, 0, 1, 2, 3, *range(5, 5 + classes)])
    return (np.arange(anchors)[:, None] * (5 + classes) + slot).ravel()


@dataclass
class _Head:
    head: Head
    classes: int
    class_activation: str
    opts: _Options


class _Builder:
    """Walks the cfg's layers once, building the Keras graph and checking every shape.

    ``outputs[i]`` is layer ``i``'s tensor (Darknet's numbering: ``[net]`` excluded), None for
    a ``[yolo]``/``[region]`` layer (its output is a model output, not an input to others).
    """

    def __init__(self, cfg: Path, weights: Path, header: WeightsHeader):
        self.cfg, self.weights, self.header = cfg, weights, header
        self.outputs: list = []
        self.convs: list[_Conv] = []
        self.conv_at: dict[int, _Conv] = {}
        self.head_convs: dict[int, int] = {}  # conv layer index → its head's cfg line
        self.heads: list[_Head] = []
        self.head_tensors: list = []
        self.floats = 0

    def build(self, sections: list[Section]):
        import keras

        net = _Options(self.cfg, sections[0])
        lo, hi = LIMITS.img_size
        width = net.int("width", lo=lo, hi=hi)
        height = net.int("height", lo=lo, hi=hi)
        net.int("channels", lo=3, hi=3)
        if width != height:
            raise net.error(
                f"width={width} height={height}: only square inputs are supported", "height"
            )
        letterbox = net.int("letter_box", 0, lo=0, hi=1)
        inputs = keras.Input((height, width, 3), name="image")
        self.input = keras.layers.Rescaling(1 / 255.0, name="rescale")(inputs)
        self.img_size = width
        for index, section in enumerate(sections[1:]):
            opts = _Options(self.cfg, section)
            opts.check_keys()
            self.outputs.append(getattr(self, f"_{section.kind}")(opts, index))
        if not self.heads:
            raise YoloError(f"{self.cfg}: no [yolo] or [region] section; nothing detects")
        first = self.heads[0]
        for h in self.heads[1:]:
            if (h.classes, h.class_activation) != (first.classes, first.class_activation):
                raise h.opts.error(
                    f"classes={h.classes} ({h.class_activation} scores) differs from the first "
                    f"head's classes={first.classes} ({first.class_activation}) at line "
                    f"{first.opts.section.line}"
                )
        left = self.header.size - self.header.offset - 4 * self.floats
        if left:
            last = self.convs[-1].opts.section.line if self.convs else sections[0].line
            raise YoloError(
                f"{self.weights}: {left:,} bytes left over after the last [convolutional] "
                f"({self.cfg}:{last}); these weights belong to another cfg"
            )
        model = keras.Model(inputs, self.head_tensors, name=self.cfg.stem)
        resize = "letterbox" if letterbox else "stretch"
        return model, first, resize

    def _input(self, opts: _Options, index: int):
        """The previous layer's tensor (the image for layer 0)."""
        if index == 0:
            return self.input
        x = self.outputs[index - 1]
        if x is None:
            raise opts.error(
                f"follows the head at layer {index - 1}, whose output is not an input here"
            )
        return x

    def _ref(self, opts: _Options, key: str, index: int, value: int):
        """Layer ``value`` (negative: relative to ``index``) as a route/shortcut input."""
        target = index + value if value < 0 else value
        if not 0 <= target < index:
            raise opts.error(
                f"{key}={opts.section.options[key].value}: layer {target} is outside "
                f"0..{index - 1}",
                key,
            )
        if self.outputs[target] is None:
            raise opts.error(f"{key}= refers to layer {target}, a detection head", key)
        if target in self.head_convs:
            raise opts.error(
                f"{key}= refers to layer {target}, the convolution that feeds the head at line "
                f"{self.head_convs[target]}; not supported",
                key,
            )
        return self.outputs[target]

    def _activation(self, x, name: str, activation: str):
        import keras

        kind = ACTIVATIONS[activation]
        if kind is None:
            return x
        if kind == "leaky":
            return keras.layers.LeakyReLU(negative_slope=LEAKY_SLOPE, name=f"{name}_leaky")(x)
        return keras.layers.Activation(kind, name=f"{name}_{activation}")(x)

    def _convolutional(self, opts: _Options, index: int):
        import keras

        x = self._input(opts, index)
        filters = opts.int("filters", 1, lo=1, hi=LIMITS.layer_dim)
        size = opts.int("size", 1, lo=1, hi=LIMITS.layer_dim)
        stride = opts.int("stride", 1, lo=1, hi=LIMITS.layer_dim)
        padding = opts.int("padding", 0, lo=0, hi=LIMITS.layer_dim)
        if opts.int("pad", 0, lo=0, hi=1):
            padding = size // 2
        groups = opts.int("groups", 1, lo=1, hi=LIMITS.layer_dim)
        batch_norm = opts.int("batch_normalize", 0, lo=0, hi=1)
        activation = opts.activation("logistic")
        h, w, c = x.shape[1:]
        if c % groups:
            raise opts.error(f"groups={groups} does not divide {c} input channels", "groups")
        if filters % groups:
            raise opts.error(f"groups={groups} does not divide filters={filters}", "groups")
        out = conv_output_size(h, size, stride, padding)
        if out < 1:
            raise opts.error(f"size={size} leaves no output of a {h}×{w} input", "size")
        conv = _Conv(opts, filters, c // groups, size, groups, bool(batch_norm), activation)
        self._reserve(opts, conv.count)

        name = f"conv{index}"
        # Keras "same" equals Darknet's symmetric padding only at stride 1 with an odd size.
        same = stride == 1 and size % 2 == 1 and padding == size // 2 > 0
        if padding and not same:
            x = keras.layers.ZeroPadding2D(padding, name=f"{name}_pad")(x)
        mode = "same" if same else "valid"
        if conv.depthwise:
            conv.layer = keras.layers.DepthwiseConv2D(
                size,
                stride,
                mode,
                depth_multiplier=filters // c,
                use_bias=not batch_norm,
                name=name,
            )
        else:
            conv.layer = keras.layers.Conv2D(
                filters, size, stride, mode, groups=groups, use_bias=not batch_norm, name=name
            )
        x = conv.layer(x)
        if batch_norm:
            conv.batch_norm = keras.layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{name}_bn")
            x = conv.batch_norm(x)
        self.convs.append(conv)
        self.conv_at[index] = conv
        return self._activation(x, name, activation)

    def _reserve(self, opts: _Options, count: int) -> None:
        """Count a convolution's weights; the file must hold them before Keras allocates them."""
        self.floats += count
        if self.floats > self.header.floats:
            raise YoloError(
                f"{self.weights}: too short for {self.cfg}: it ends inside the weights of "
                f"[{opts.section.kind}] at line {opts.section.line} ({self.header.size:,} bytes; "
                f"the cfg needs at least {self.header.offset + 4 * self.floats:,})"
            )

    def _maxpool(self, opts: _Options, index: int):
        import keras

        x = self._input(opts, index)
        stride = opts.int("stride", 1, lo=1, hi=LIMITS.layer_dim)
        size = opts.int("size", stride, lo=1, hi=LIMITS.layer_dim)
        padding = opts.int("padding", size - 1, lo=0, hi=size - 1)
        h, w = x.shape[1:3]
        name = f"maxpool{index}"
        rows, cols = (_pool_axis(n, size, stride, padding) for n in (h, w))
        if min(rows.out, cols.out) < 1:
            raise opts.error(f"size={size} leaves no output of a {h}×{w} input", "size")
        if rows.same and cols.same:
            return keras.layers.MaxPooling2D(size, stride, "same", name=name)(x)
        x = _repeat_edges(x, 1, rows.before, rows.after, f"{name}_rows")
        x = _repeat_edges(x, 2, cols.before, cols.after, f"{name}_cols")
        return keras.layers.MaxPooling2D(size, stride, "valid", name=name)(x)

    def _route(self, opts: _Options, index: int):
        import keras

        values = opts.numbers("layers", int)
        if not values:
            raise opts.error("layers= is empty", "layers")
        sources = [self._ref(opts, "layers", index, v) for v in values]
        groups = opts.int("groups", 1, lo=1, hi=LIMITS.layer_dim)
        group_id = opts.int("group_id", 0, lo=0, hi=groups - 1)
        sizes = {tuple(s.shape[1:3]) for s in sources}
        if len(sizes) > 1:
            shown = " and ".join(f"{h}×{w}" for h, w in sorted(sizes))
            raise opts.error(
                f"layers={opts.section.options['layers'].value} differ in size ({shown})", "layers"
            )
        name = f"route{index}"
        if groups > 1:
            for k, s in enumerate(sources):
                if s.shape[-1] % groups:
                    raise opts.error(
                        f"groups={groups} does not divide the {s.shape[-1]} channels of layer "
                        f"{values[k]}",
                        "groups",
                    )
            sources = [
                _channel_slice(s, group_id, groups, f"{name}_{k}" if len(sources) > 1 else name)
                for k, s in enumerate(sources)
            ]
        if len(sources) == 1:
            return sources[0]
        return keras.layers.Concatenate(axis=-1, name=name)(sources)

    def _shortcut(self, opts: _Options, index: int):
        import keras

        x = self._input(opts, index)
        values = opts.numbers("from", int)
        sources = [self._ref(opts, "from", index, v) for v in values]
        for value, s in zip(values, sources):
            if tuple(s.shape[1:]) != tuple(x.shape[1:]):
                raise opts.error(
                    f"from={value} is {_shape(s)}, the previous layer {_shape(x)}; "
                    "a shortcut adds equal shapes only",
                    "from",
                )
        activation = opts.activation("linear")
        name = f"shortcut{index}"
        x = keras.layers.Add(name=name)([x, *sources])
        return self._activation(x, name, activation)

    def _upsample(self, opts: _Options, index: int):
        import keras

        x = self._input(opts, index)
        stride = opts.int("stride", 2, lo=1, hi=LIMITS.layer_dim)
        if opts.float("scale", 1.0, lo=-1e9, hi=1e9) != 1.0:
            raise opts.error(
                f"scale={opts.section.options['scale'].value} is not supported (only 1)", "scale"
            )
        if stride * x.shape[1] > LIMITS.layer_dim:
            raise opts.error(f"stride={stride} makes a {stride * x.shape[1]}-cell side", "stride")
        if stride == 1:
            return x
        return keras.layers.UpSampling2D(stride, interpolation="nearest", name=f"upsample{index}")(
            x
        )

    def _dropout(self, opts: _Options, index: int):
        return self._input(opts, index)

    def _yolo(self, opts: _Options, index: int):
        classes = opts.int("classes", 20, lo=1, hi=LIMITS.layer_dim)
        num = opts.int("num", 1, lo=1, hi=LIMITS.layer_dim)
        mask = opts.numbers("mask", int) if opts.has("mask") else list(range(num))
        bad = [m for m in mask if not 0 <= m < num]
        if bad or not mask:
            raise opts.error(f"mask= must pick anchors in 0..{num - 1} (num={num})", "mask")
        anchors = self._anchors(opts, num)
        scale = opts.float("scale_x_y", 1.0, lo=1.0, hi=4.0)
        opts.int("new_coords", 0, lo=0, hi=0)
        return self._head(opts, index, classes, [anchors[m] for m in mask], 1.0, scale, "sigmoid")

    def _region(self, opts: _Options, index: int):
        classes = opts.int("classes", 20, lo=1, hi=LIMITS.layer_dim)
        num = opts.int("num", 1, lo=1, hi=LIMITS.layer_dim)
        opts.int("coords", 4, lo=4, hi=4)
        if opts.int("softmax", 0, lo=0, hi=1) != 1:
            raise opts.error(
                "softmax=1 is required (raw class scores are not supported)", "softmax"
            )
        anchors = self._anchors(opts, num)
        return self._head(opts, index, classes, anchors, None, 1.0, "softmax")

    def _anchors(self, opts: _Options, num: int) -> list[tuple[float, float]]:
        values = opts.numbers("anchors", float)
        if len(values) != 2 * num or not all(0 < v < 1e6 for v in values):
            raise opts.error(
                f"anchors= holds {len(values)} numbers; num={num} needs {2 * num} positive ones",
                "anchors",
            )
        return list(zip(values[0::2], values[1::2]))

    def _head(self, opts, index, classes, anchors, px_per_unit, scale_xy, class_activation):
        """One model output from the convolution before ``opts``'s head section.

        px_per_unit: anchor units → input pixels (None: one grid cell, YOLOv2's [region]).
        """
        import keras

        x = self._input(opts, index)
        conv = self.conv_at.get(index - 1)
        if conv is None:
            raise opts.error("must follow the [convolutional] that computes it")
        line = conv.opts.section.line
        if conv.groups != 1 or conv.activation != "linear":
            raise opts.error(
                f"the [convolutional] before it (line {line}) must be linear with groups=1"
            )
        b = len(anchors)
        if conv.filters != b * (5 + classes):
            raise opts.error(
                f"the [convolutional] before it (line {line}) has filters={conv.filters}; "
                f"{b} anchors × ({classes} classes + 5) need {b * (5 + classes)}"
            )
        s = x.shape[1]
        if self.img_size % s:
            raise opts.error(f"its {s}×{s} grid does not divide the {self.img_size}-pixel input")
        stride = self.img_size // s
        unit = stride if px_per_unit is None else px_per_unit
        conv.order = head_channel_order(b, classes)
        self.head_convs[index - 1] = opts.section.line
        name = f"head{len(self.heads)}"
        self.head_tensors.append(keras.layers.Reshape((s, s, b, 5 + classes), name=name)(x))
        head = Head(stride, tuple((w * unit, h * unit) for w, h in anchors), scale_xy)
        self.heads.append(_Head(head, classes, class_activation, opts))
        return None


def _shape(x) -> str:
    return "×".join(str(d) for d in x.shape[1:])


class _PoolAxis(NamedTuple):
    """One axis of a Darknet max pool: output length, cells to pad before and after for a
    ``valid`` pool, and whether Keras ``same`` pooling pads identically."""

    out: int
    before: int
    after: int
    same: bool


def _pool_axis(n: int, size: int, stride: int, padding: int) -> _PoolAxis:
    out = (n + padding - size) // stride + 1
    before = padding // 2
    after = max(0, (out - 1) * stride + size - n - before)
    same_out = -(-n // stride)
    same_before = max((same_out - 1) * stride + size - n, 0) // 2
    return _PoolAxis(out, before, after, out == same_out and before == same_before)


def _repeat_edges(x, axis: int, before: int, after: int, name: str):
    """Pad spatial ``axis`` (1 rows, 2 columns) by repeating its first/last cell."""
    import keras

    if not before and not after:
        return x
    n = x.shape[axis]
    parts = []
    for count, keep in ((before, (0, n - 1)), (after, (n - 1, 0))):
        if not count:
            parts.append(None)
            continue
        crop = (keep, (0, 0)) if axis == 1 else ((0, 0), keep)
        side = "before" if keep[0] == 0 else "after"
        edge = keras.layers.Cropping2D(crop, name=f"{name}_{side}")(x)
        if count > 1:
            factor = (count, 1) if axis == 1 else (1, count)
            edge = keras.layers.UpSampling2D(factor, name=f"{name}_{side}_repeat")(edge)
        parts.append(edge)
    pieces = [p for p in (parts[0], x, parts[1]) if p is not None]
    return keras.layers.Concatenate(axis=axis, name=name)(pieces)


def _channel_slice(x, group_id: int, groups: int, name: str):
    """Channels ``[group_id·C/groups, (group_id + 1)·C/groups)`` of ``x`` ``(batch, H, W, C)``,
    by Reshape → Cropping3D on the channel axis → Reshape (no Lambda)."""
    import keras

    h, w, c = x.shape[1:]
    part = c // groups
    x = keras.layers.Reshape((h, w, c, 1), name=f"{name}_split")(x)
    crop = ((0, 0), (0, 0), (group_id * part, c - (group_id + 1) * part))
    x = keras.layers.Cropping3D(crop, name=f"{name}_slice")(x)
    return keras.layers.Reshape((h, w, part), name=f"{name}_merge")(x)


def _load_weights(builder: _Builder) -> None:
    """Read the ``.weights`` floats and set them on the built layers (heads permuted)."""
    header, convs = builder.header, builder.convs
    data = np.fromfile(builder.weights, dtype="<f4", count=builder.floats, offset=header.offset)
    start = 0
    for conv in convs:
        values = data[start : start + conv.count]
        start += conv.count
        _set_conv(conv, values, builder.weights)


def _set_conv(conv: _Conv, values: np.ndarray, weights: Path) -> None:
    """Set one convolution's (and its batch norm's) weights from its float32 block."""
    where = f"{weights}: [convolutional] at {conv.opts.cfg}:{conv.opts.section.line}"
    if not np.isfinite(values).all():
        raise YoloError(f"{where} holds NaN or infinite weights")
    n = conv.filters
    per_channel = [values[i * n : (i + 1) * n] for i in range(4 if conv.has_bn else 1)]
    kernel = values[len(per_channel) * n :].reshape(n, conv.in_per_group, conv.size, conv.size)
    if conv.has_bn and (per_channel[3] < 0).any():
        raise YoloError(f"{where} holds a negative batch-norm variance")
    if conv.order is not None:
        per_channel = [p[conv.order] for p in per_channel]
        kernel = kernel[conv.order]
    if conv.depthwise:
        c = conv.groups
        kernel = kernel.reshape(c, n // c, conv.size, conv.size).transpose(2, 3, 0, 1)
    else:
        kernel = kernel.transpose(2, 3, 1, 0)
    if conv.has_bn:
        beta, gamma, mean, variance = per_channel
        conv.layer.set_weights([kernel])
        conv.batch_norm.set_weights([gamma, beta, mean, variance])
    else:
        conv.layer.set_weights([kernel, per_channel[0]])


def read_names(path: str | Path, classes: int) -> list[str]:
    """Class names, one a line (Darknet's ``.names``, read by
    :func:`yolo_cli.data.records.read_class_list`); their count must be ``classes``."""
    from yolo_cli.data.records import read_class_list

    names = read_class_list(path)
    if len(names) != classes:
        raise YoloError(f"{path}: {len(names)} names, but the cfg says classes={classes}")
    return names


def import_darknet(cfg: str | Path, weights: str | Path, names: str | Path | None = None):
    """Convert a Darknet model → ``(keras.Model, ModelMeta)``.

    The model maps ``(batch, S_in, S_in, 3)`` float32 RGB 0..255 to one raw grid per
    ``[yolo]``/``[region]`` section, in cfg order, each ``(batch, S, S, B, 5 + C)`` with slots
    ``[p_c, t_x, t_y, t_w, t_h, class logits…]``. names: a ``.names`` file (default
    ``class0``, ``class1``, …). Raises :class:`YoloError` naming file, section and line.
    """
    cfg, weights = Path(cfg), Path(weights)
    sections = parse_cfg(cfg)
    header = read_weights_header(weights)
    builder = _Builder(cfg, weights, header)
    model, first, resize = builder.build(sections)
    _load_weights(builder)
    labels = (
        read_names(names, first.classes) if names else [f"class{i}" for i in range(first.classes)]
    )
    meta = ModelMeta(
        kind="yolo",
        names=labels,
        img_size=builder.img_size,
        heads=[h.head for h in builder.heads],
        class_activation=first.class_activation,
        resize=resize,
        conf=DARKNET_CONF,
        extra={"darknet": {"cfg": cfg.name, "weights": weights.name, "seen": header.seen}},
    )
    meta.validate(cfg)
    return model, meta


def describe(meta: ModelMeta, parameters: int) -> str:
    """One line for the CLI: classes, heads (stride, anchors), input, parameters."""
    heads = "; ".join(
        f"stride {h.stride} anchors " + " ".join(f"{w:g}×{hh:g}" for w, hh in h.anchors)
        for h in meta.heads
    )
    return (
        f"{meta.num_classes} classes ({meta.class_activation}), {len(meta.heads)} heads "
        f"[{heads}], input {meta.img_size}×{meta.img_size} ({meta.resize}), "
        f"{parameters:,} parameters"
    )
