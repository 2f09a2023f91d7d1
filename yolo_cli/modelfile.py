"""The one model file: a Keras 3 ``.keras`` archive plus ``yolo_cli.json`` metadata inside it.

The network is made only of stock Keras layers, so it loads with ``safe_mode=True``: a model
file from outside is data, not code. The metadata (kind, class names, input size, anchors)
travels inside the same zip archive, so a model never loses what it was trained for.
Writes are atomic (temporary file + rename): a crash never leaves a half-written model.
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from yolo_cli.errors import YoloError

META_NAME = "yolo_cli.json"
KINDS = ("yolo", "window")


@dataclass
class ModelMeta:
    """What a model was trained for.

    kind: ``yolo`` (grid detector) or ``window`` (crop classifier of the sliding-window
    baselines). names: class names, index = class id. img_size: square input side in pixels
    (the crop side for ``window``). anchors: ``(B, 2)`` anchor (w, h) in input pixels (yolo).
    extra: anything else worth keeping (training command, dataset, epochs).
    """

    kind: str
    names: list[str]
    img_size: int
    anchors: list[list[float]] = field(default_factory=list)
    extra: dict = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.names)


def save_model(model, path: str | Path, meta: ModelMeta, include_optimizer: bool = True) -> Path:
    """Write ``model`` and ``meta`` to ``path`` (``.keras``) atomically; returns the path."""
    path = Path(path)
    if path.suffix != ".keras":
        raise YoloError(f"{path}: model files end in .keras")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.keras")
    try:
        if not include_optimizer and getattr(model, "optimizer", None) is not None:
            model = _without_optimizer(model)
        model.save(tmp)
        with zipfile.ZipFile(tmp, "a") as archive:
            archive.writestr(META_NAME, json.dumps(asdict(meta), indent=1))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _without_optimizer(model):
    """A copy of a compiled model without its optimizer (Keras 3 always saves a compiled
    model's optimizer state, which triples the file)."""
    clone = type(model).from_config(model.get_config())  # clone_model would keep compile state
    clone.set_weights(model.get_weights())
    return clone


def read_meta(path: str | Path) -> ModelMeta:
    """Read only the metadata of a model file (no TensorFlow needed)."""
    path = Path(path)
    if not path.is_file():
        raise YoloError(f"{path}: model file not found")
    try:
        with zipfile.ZipFile(path) as archive:
            if META_NAME not in archive.namelist():
                raise YoloError(f"{path}: not a yolo-cli model (no {META_NAME} inside)")
            raw = json.loads(archive.read(META_NAME))
    except (zipfile.BadZipFile, OSError) as e:
        raise YoloError(f"{path}: not a Keras model archive ({e})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise YoloError(f"{path}: corrupt model metadata ({e})") from None
    try:
        meta = ModelMeta(**raw)
    except TypeError as e:
        raise YoloError(f"{path}: corrupt model metadata ({e})") from None
    if meta.kind not in KINDS or not meta.names or meta.img_size <= 0:
        raise YoloError(f"{path}: model metadata is incomplete (kind, names, img_size)")
    return meta


def load_model(path: str | Path, compile: bool = False):
    """Load a model file → ``(keras.Model, ModelMeta)``.

    Uses ``safe_mode=True``: a file holding code (a Lambda layer) is refused. Every failure a
    user can cause (missing, corrupt, foreign or hostile file) raises :class:`YoloError`.
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
    return model, meta
