"""The one model file: a Keras 3 ``.keras`` archive plus ``yolo_cli.json`` metadata inside it.

The network is made only of stock Keras layers, so it loads with ``safe_mode=True``: a model
file from outside is data, not code. The metadata (kind, class names, input size, heads with
their strides and anchors, class activation, resize mode) travels inside the same zip archive,
so a model never loses what it was trained for. A file is checked before it is trusted: the
archive's entry sizes (declared and actual) against caps, the layer sizes its config declares,
the metadata's types and ranges, and finally that the network's outputs are the grids the
metadata describes. Writes are atomic (temporary file + rename).
"""

from __future__ import annotations

import json
import math
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from yolo_cli import config
from yolo_cli.config import DEFAULTS, LIMITS
from yolo_cli.errors import YoloError
from yolo_cli.fileio import atomic_path

META_NAME = "yolo_cli.json"
KINDS = ("yolo", "window")
CLASS_ACTIVATIONS = ("softmax", "sigmoid")
RESIZE_MODES = ("letterbox", "stretch")
_CONFIG_NAME = "config.json"
EXPORTED_SUFFIXES = (".tflite", ".onnx")  # and SavedModel folders: yolo_cli.runtimes
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Head:
    """One detection grid: ``stride`` input pixels per cell, ``anchors`` ``(B, 2)`` (w, h) in
    input pixels, and Darknet's ``scale_xy`` (cell offset ``σ(t)·s − (s − 1)/2``; 1 is YOLOv2's
    plain ``σ(t)``, 2 lets a centre reach half a cell past its own)."""

    stride: int
    anchors: tuple[tuple[float, float], ...]
    scale_xy: float = 1.0

    def __post_init__(self):
        object.__setattr__(self, "anchors", tuple((float(w), float(h)) for w, h in self.anchors))

    def grid(self, img_size: int) -> int:
        """Cells per side at input ``img_size``."""
        return img_size // self.stride


@dataclass
class ModelMeta:
    """What a model was trained for.

    kind: ``yolo`` (grid detector) or ``window`` (crop classifier of the sliding-window
    baselines). names: class names, index = class id. img_size: square input side in pixels
    (the crop side for ``window``). heads: the grids (yolo), in the order of the network's
    outputs. class_activation: ``softmax`` (YOLOv2, one class per box) or ``sigmoid``
    (YOLOv3). resize: ``letterbox`` (aspect kept, grey borders) or ``stretch`` (plain resize,
    as Darknet). conf: the score threshold the model is meant to detect at (``None``: the
    course's :data:`DEFAULTS.conf_threshold`); one trained with the IoU-aware loss has
    :data:`DEFAULTS.iou_conf`, a converted Darknet model Darknet's.
    extra: how it was made (training config, Darknet source, …).
    """

    kind: str
    names: list[str]
    img_size: int
    heads: list[Head] = field(default_factory=list)
    class_activation: str = "softmax"
    resize: str = "letterbox"
    conf: float | None = None
    extra: dict = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.names)

    @property
    def detect_conf(self) -> float:
        """The score threshold ``yolo detect`` uses unless told: :attr:`conf` or the course's."""
        return DEFAULTS.conf_threshold if self.conf is None else self.conf

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_dict(cls, raw, where: str | Path) -> ModelMeta:
        """Metadata from its JSON form, types and ranges checked; raises :class:`YoloError`.

        A file of the first format (one grid: ``anchors`` and no ``heads``) is read as one
        head of stride 32 with softmax classes and letterbox resizing, as it was trained.
        """
        if not isinstance(raw, dict):
            raise YoloError(f"{where}: model metadata is not a JSON object")
        raw = dict(raw)
        if "anchors" in raw and "heads" not in raw:
            raw["heads"] = [{"stride": DEFAULTS.stride, "anchors": raw.pop("anchors")}]
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise YoloError(f"{where}: model metadata has unknown fields {unknown}")
        missing = sorted({"kind", "names", "img_size"} - set(raw))
        if missing:
            raise YoloError(f"{where}: model metadata lacks {missing}")
        heads = raw.get("heads", [])
        if not isinstance(heads, list):
            raise YoloError(f"{where}: model metadata 'heads' is not a list")
        raw["heads"] = [_head(h, where) for h in heads]
        meta = cls(**raw)
        meta.validate(where)
        return meta

    def validate(self, where: str | Path) -> None:
        """Check types and ranges; raises :class:`YoloError` naming ``where`` and the field."""

        def bad(what: str):
            return YoloError(f"{where}: model metadata: {what}")

        if self.kind not in KINDS:
            raise bad(f"kind {self.kind!r} is not one of {KINDS}")
        if (
            not isinstance(self.names, list)
            or not self.names
            or not all(isinstance(n, str) and n for n in self.names)
        ):
            raise bad("names must be a non-empty list of class names")
        if len(set(self.names)) != len(self.names):
            raise bad("class names repeat")
        lo, hi = LIMITS.img_size
        if not _is_int(self.img_size) or not lo <= self.img_size <= hi:
            raise bad(f"img_size {self.img_size!r} is not a whole number in {lo}..{hi}")
        if self.class_activation not in CLASS_ACTIVATIONS:
            raise bad(
                f"class_activation {self.class_activation!r} is not one of {CLASS_ACTIVATIONS}"
            )
        if self.resize not in RESIZE_MODES:
            raise bad(f"resize {self.resize!r} is not one of {RESIZE_MODES}")
        if self.conf is not None and not (_is_number(self.conf) and 0 <= self.conf < 1):
            raise bad(f"conf {self.conf!r} is not a score threshold in [0, 1)")
        if not isinstance(self.extra, dict):
            raise bad("extra must be an object")
        if self.kind != "yolo":
            return
        if not self.heads:
            raise bad("a yolo model needs at least one head")
        for i, h in enumerate(self.heads):
            if self.img_size % h.stride:
                raise bad(f"head {i}: stride {h.stride} does not divide img_size {self.img_size}")


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _head(raw, where) -> Head:
    if not isinstance(raw, dict) or set(raw) - {"stride", "anchors", "scale_xy"}:
        raise YoloError(f"{where}: model metadata: a head must be {{stride, anchors, scale_xy}}")
    stride, anchors = raw.get("stride"), raw.get("anchors")
    scale = raw.get("scale_xy", 1.0)
    if not _is_int(stride) or not 1 <= stride <= LIMITS.img_size[1]:
        raise YoloError(
            f"{where}: model metadata: head stride {stride!r} is not a positive integer"
        )
    ok = (
        isinstance(anchors, list)
        and 1 <= len(anchors) <= LIMITS.anchors_per_head
        and all(
            isinstance(a, list)
            and len(a) == 2
            and all(_is_number(v) and 0 < v <= LIMITS.img_size[1] * 4 for v in a)
            for a in anchors
        )
    )
    if not ok:
        raise YoloError(
            f"{where}: model metadata: head anchors must be 1..{LIMITS.anchors_per_head} "
            f"positive [w, h] pairs, got {json.dumps(anchors)[:80]}"
        )
    if not _is_number(scale) or not 1.0 <= scale <= 4.0:
        raise YoloError(f"{where}: model metadata: head scale_xy {scale!r} is not in 1..4")
    return Head(stride, anchors, float(scale))


def _is_number(x) -> bool:
    return (isinstance(x, int | float)) and not isinstance(x, bool) and math.isfinite(x)


def save_model(model, path: str | Path, meta: ModelMeta, include_optimizer: bool = True) -> Path:
    """Write ``model`` and ``meta`` to ``path`` (``.keras``) atomically; returns the path."""
    path = Path(path)
    if path.suffix != ".keras":
        raise YoloError(f"{path}: model files end in .keras")
    meta.validate(path)
    if not include_optimizer and getattr(model, "optimizer", None) is not None:
        model = _without_optimizer(model)
    with atomic_path(path, suffix=".keras") as tmp:
        model.save(tmp)
        with zipfile.ZipFile(tmp, "a") as archive:
            archive.writestr(META_NAME, meta.to_json())
    return path


def _without_optimizer(model):
    """A copy of a compiled model without its optimizer (Keras 3 always saves a compiled
    model's optimizer state, which triples the file)."""
    clone = type(model).from_config(model.get_config())  # clone_model would keep compile state
    clone.set_weights(model.get_weights())
    return clone


def _check_archive(archive: zipfile.ZipFile, path) -> None:
    """Entry count and sizes within :data:`yolo_cli.config.LIMITS`, declared and actual
    (a header can lie; the check streams each entry and stops once it passes its size)."""
    infos = archive.infolist()
    if len(infos) > LIMITS.model_entries:
        raise YoloError(
            f"{path}: archive holds {len(infos)} entries (at most {LIMITS.model_entries})"
        )
    for info in infos:
        cap = (
            LIMITS.model_json_bytes
            if info.filename.endswith(".json")
            else LIMITS.model_unpacked_bytes
        )
        if info.file_size > cap:
            raise YoloError(
                f"{path}: archive entry {info.filename} declares {info.file_size:,} bytes "
                f"(at most {cap:,} accepted)"
            )
    total = sum(i.file_size for i in infos)
    if total > LIMITS.model_unpacked_bytes:
        raise YoloError(
            f"{path}: archive unpacks to {total:,} bytes (at most {LIMITS.model_unpacked_bytes:,})"
        )
    for info in infos:
        seen = 0
        with archive.open(info) as f:
            while chunk := f.read(_CHUNK):
                seen += len(chunk)
                if seen > info.file_size:
                    raise YoloError(
                        f"{path}: archive entry {info.filename} is larger than it declares"
                    )


def _check_config(config, path) -> None:
    """Refuse a network config that declares layers too large to build (a hostile file would
    otherwise make Keras allocate its weights before any check could run)."""
    stack, layers = [config], 0
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if "class_name" in node and isinstance(node.get("config"), dict):
                layers += 1
            for key, value in node.items():
                if key in _SIZE_KEYS:
                    for v in value if isinstance(value, list) else [value]:
                        if _is_number(v) and v > LIMITS.layer_dim:
                            raise YoloError(
                                f"{path}: network config declares {key}={v} "
                                f"(at most {LIMITS.layer_dim} accepted)"
                            )
                stack.append(value)
        elif isinstance(node, list):
            stack.extend(node)
    if layers > LIMITS.model_layers:
        raise YoloError(
            f"{path}: network config has {layers} layers (at most {LIMITS.model_layers})"
        )


_SIZE_KEYS = frozenset(
    {
        "units",
        "filters",
        "kernel_size",
        "pool_size",
        "size",
        "target_shape",
        "batch_shape",
        "shape",
        "input_dim",
        "output_dim",
        "dims",
        "groups",
        "depth_multiplier",
    }
)


def read_meta(path: str | Path) -> ModelMeta:
    """Read only the metadata of a model file (no TensorFlow needed), after checking the
    archive against the caps in :data:`yolo_cli.config.LIMITS`. An exported artifact (a
    ``.tflite`` or ``.onnx`` file, a SavedModel folder) gives the metadata it carries
    (:func:`yolo_cli.runtimes.read_meta`)."""
    path = Path(path)
    if path.is_dir() or path.suffix.lower() in EXPORTED_SUFFIXES:
        from yolo_cli.runtimes import read_meta as read_exported

        return read_exported(path)
    if not path.is_file():
        raise YoloError(f"{path}: model file not found")
    size = path.stat().st_size
    if size > LIMITS.model_bytes:
        raise YoloError(f"{path}: {size:,} bytes, over the {LIMITS.model_bytes:,}-byte model cap")
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            if META_NAME not in names:
                raise YoloError(f"{path}: not a yolo-cli model (no {META_NAME} inside)")
            _check_archive(archive, path)
            raw = json.loads(archive.read(META_NAME))
            if _CONFIG_NAME in names:
                _check_config(json.loads(archive.read(_CONFIG_NAME)), path)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError) as e:
        raise YoloError(f"{path}: not a Keras model archive ({e})") from None
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
        raise YoloError(f"{path}: corrupt model metadata ({type(e).__name__}: {e})") from None
    return ModelMeta.from_dict(raw, path)


def check_network(model, meta: ModelMeta, path) -> None:
    """Refuse a network whose input or outputs contradict its metadata (a foreign Keras model
    with a forged ``yolo_cli.json``, anchors or names that do not fit the head)."""
    shape = tuple(model.input_shape)
    if meta.kind == "window":
        return
    want_in = (None, meta.img_size, meta.img_size, 3)
    if shape != want_in:
        raise YoloError(f"{path}: network input {shape} differs from the metadata's {want_in}")
    outputs = model.output_shape if isinstance(model.output_shape, list) else [model.output_shape]
    if len(outputs) != len(meta.heads):
        raise YoloError(
            f"{path}: network has {len(outputs)} outputs for the metadata's {len(meta.heads)} heads"
        )
    for i, (out, head) in enumerate(zip(outputs, meta.heads)):
        s = head.grid(meta.img_size)
        want = (None, s, s, len(head.anchors), 5 + meta.num_classes)
        if tuple(out) != want:
            raise YoloError(
                f"{path}: output {i} has shape {tuple(out)}, but head {i} "
                f"(stride {head.stride}, {len(head.anchors)} anchors, {meta.num_classes} classes) "
                f"needs {want}"
            )


def load_model(path: str | Path, compile: bool = False):
    """Load a model file → ``(keras.Model, ModelMeta)``.

    Uses ``safe_mode=True``: a file holding code (a Lambda layer) is refused. Every failure a
    user can cause (missing, corrupt, foreign, oversized or hostile file; metadata that
    contradicts the network; a NaN or infinite weight, which would silently detect nothing)
    raises :class:`YoloError`.
    """
    import keras

    meta = read_meta(path)
    try:
        model = keras.saving.load_model(path, compile=compile, safe_mode=True)
    except Exception as e:  # Keras raises many types for bad archives; all mean "bad file"
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        if "safe_mode" in str(e) or "Lambda" in str(e):
            reason = "it contains code (a Lambda layer); refused in safe mode"
        raise YoloError(f"{path}: cannot load model: {reason}") from None
    check_network(model, meta, path)
    bad = first_non_finite(model.weights)
    if bad is not None:
        raise YoloError(f"{path}: weight {bad} holds NaN or infinite values")
    return model, meta


def first_non_finite(variables) -> str | None:
    """The path of the first of ``variables`` (Keras variables) holding a NaN or an infinity,
    or None."""
    import numpy as np

    for v in variables:
        if not np.isfinite(np.asarray(v)).all():
            return v.path
    return None


def shipped_model(name: str) -> Path:
    """The file of a shipped model (:data:`yolo_cli.config.SHIPPED_MODELS`)."""
    return config.MODELS_DIR / config.SHIPPED_MODELS[name]


def model_path(
    model: str | Path | None, method: str = DEFAULTS.method, default: str | None = None
) -> Path:
    """``--model`` → a model file: a path, or a shipped model's short name; ``None`` is the
    shipped model ``default`` (:data:`yolo_cli.config.DETECT_MODEL` unless given).

    A missing shipped model gets its own message; the sliding-window methods, which have no
    shipped model, say so.
    """
    if model is None and method != "yolo":
        raise YoloError(
            f"--method {method}: needs --model PATH, a window classifier "
            "(train one with `yolo train --method window`)"
        )
    name = str(model) if model is not None else (default or config.DETECT_MODEL)
    if model is not None and (name not in config.SHIPPED_MODELS or Path(name).exists()):
        return Path(name)
    path = shipped_model(name)
    if not path.is_file():
        raise YoloError(
            f"{path}: the shipped model {name!r} is missing; train one with `yolo train` "
            "or pass --model PATH"
        )
    return path


def model_outputs(model, images, training: bool = False) -> list:
    """The network's raw heads as a list (a one-grid model returns a single tensor)."""
    out = model(images, training=training)
    return list(out) if isinstance(out, list | tuple) else [out]
