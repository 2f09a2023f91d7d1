"""Running a YOLO model on images: resize → model → decode → threshold + NMS → original pixels.

A :class:`Detector` holds either a Keras model or an exported artifact's runtime
(:mod:`yolo_cli.runtimes`: LiteRT, ONNX Runtime, a TensorFlow SavedModel). The Keras model runs
with its BatchNorm folded into the convolutions (:func:`fold_batchnorm`), and the model, the
decoding of every head and NMS run in one ``tf.function`` with a fixed input signature (any batch
size, fixed square input), so a stream of images never retraces, on whichever device
:mod:`yolo_cli.device` chose. A runtime computes the raw grids; the same decode and NMS then run
on them in TensorFlow. Images are letterboxed or stretched as the model's metadata says
(``meta.resize``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace

import numpy as np

from yolo_cli.boxes import Letterbox, Stretch, clip, resize_image
from yolo_cli.config import DEFAULTS
from yolo_cli.device import device_scope
from yolo_cli.modelfile import ModelMeta
from yolo_cli.postprocess import Detections


@dataclass
class Thresholds:
    """Score threshold (boxes with ``p_c · P(class) <= conf`` are discarded), NMS IoU, the cap
    per image, and whether kept boxes are voted (:func:`yolo_cli.postprocess.vote`)."""

    conf: float = DEFAULTS.conf_threshold
    nms_iou: float = DEFAULTS.nms_iou
    max_det: int = DEFAULTS.max_det
    box_vote: bool = DEFAULTS.box_vote


class Detector:
    """A YOLO model ready to detect: ``detect(images) → [Detections]`` in original pixels.

    model: a Keras model (run by TensorFlow with BatchNorm folded, decode and NMS fused into one
    graph) or a runtime of an exported artifact (:func:`yolo_cli.runtimes.load_runtime`), whose
    raw grids go through the same decode and NMS. ``model`` is the Keras model as given
    (``None`` for a runtime), ``engine`` the runtime (``None`` for a Keras model), ``runtime``
    names what computes the grids. fold_bn: ``False``
    runs the Keras model with its BatchNorm layers (to measure what folding buys).

    >>> detector = Detector.from_file("synthetic")   # a path or a shipped model's short name
    >>> detections = detector(image)                  # (H, W, 3) uint8 RGB → Detections
    """

    def __init__(
        self,
        model,
        meta: ModelMeta,
        thresholds: Thresholds | None = None,
        device=None,
        fold_bn: bool = True,
    ):
        import tensorflow as tf

        from yolo_cli.modelfile import model_outputs
        from yolo_cli.postprocess import decode, select

        self.meta = meta
        self.thresholds = thresholds or Thresholds()
        self.device = device
        t = self.thresholds
        size = meta.img_size

        def postprocess(raws):
            boxes, p_c, probs = decode(raws, meta.heads, size, meta.class_activation)
            return select(boxes, p_c, probs, t.conf, t.nms_iou, t.max_det, t.box_vote)

        if _is_keras(model):
            self.model, self.engine, self.runtime = model, None, "tensorflow"
            with device_scope(device):
                graph = fold_batchnorm(model) if fold_bn else model

            @tf.function(input_signature=[tf.TensorSpec((None, size, size, 3), tf.float32)])
            def run(images):
                return postprocess(model_outputs(graph, images))

            self._run = run
            return
        self.model, self.engine, self.runtime = None, model, model.name
        grids = [
            tf.TensorSpec((None, h.grid(size), h.grid(size), len(h.anchors), 5 + meta.num_classes))
            for h in meta.heads
        ]
        post = tf.function(lambda *raws: postprocess(list(raws)), input_signature=grids)
        self._run = lambda images: post(*model(images))

    @classmethod
    def from_file(
        cls,
        path=None,
        thresholds: Thresholds | None = None,
        device=None,
        threads: int | None = None,
    ) -> Detector:
        """A detector for a ``.keras`` model file, an exported ``.tflite`` / ``.onnx`` file or a
        SavedModel folder (:func:`yolo_cli.runtimes.load_runtime`); ``path`` may be a shipped
        model's short name, ``None`` the default one. threads: CPU threads of a LiteRT or ONNX
        Runtime session (default: every core). Raises :class:`YoloError` for a bad file or a
        model that is not a YOLO detector."""
        from yolo_cli.errors import YoloError
        from yolo_cli.modelfile import model_path
        from yolo_cli.runtimes import load_runtime

        path = model_path(path)
        with device_scope(device):
            model, meta = load_runtime(path, threads=threads)
        if meta.kind != "yolo":
            raise YoloError(f"{path}: a {meta.kind!r} model, not a YOLO detector")
        return cls(model, meta, thresholds, device)

    def resized(self, img_size: int, path) -> Detector:
        """The same network and weights at input side ``img_size``, with the same thresholds and
        device (:func:`yolo_cli.model.resized_model`; ``path``, the model file, for its
        messages). Raises :class:`YoloError` where the model cannot be rebuilt."""
        from yolo_cli.model import resized_model

        with device_scope(self.device):
            model = resized_model(self.model, self.meta, img_size, path)
        return Detector(model, replace(self.meta, img_size=img_size), self.thresholds, self.device)

    @property
    def macs(self) -> int | None:
        """Multiply-adds per image of the network (``None`` when an artifact does not say)."""
        from yolo_cli.summary import total_macs

        if self.model is not None:
            return total_macs(self.model)
        return self.meta.extra.get("export", {}).get("macs")

    def raw(self, batch: np.ndarray):
        """Model input ``(N, size, size, 3)`` → padded (boxes, scores, classes, count) numpy,
        boxes xyxy in model-input pixels (:func:`yolo_cli.postprocess.select`)."""
        with device_scope(self.device):
            out = self._run(np.asarray(batch, np.float32))
        return tuple(o.numpy() for o in out)

    def detect(self, images: list[np.ndarray]) -> list[Detections]:
        """RGB uint8 images ``(H, W, 3)`` of any sizes → one :class:`Detections` each.

        Boxes are xyxy pixels of each original image (resize undone, clipped), sorted by score.
        """
        if not images:
            return []
        size, mode = self.meta.img_size, self.meta.resize
        inputs, letterboxes = zip(*(resize_image(im, size, mode) for im in images))
        boxes, scores, classes, count = self.raw(np.stack(inputs).astype(np.float32))
        return [
            _unletterbox(
                boxes[i, : count[i]], scores[i, : count[i]], classes[i, : count[i]], lb, im
            )
            for i, (lb, im) in enumerate(zip(letterboxes, images))
        ]

    def __call__(self, image: np.ndarray) -> Detections:
        """One RGB uint8 image ``(H, W, 3)`` → its :class:`Detections` (original pixels)."""
        return self.detect([image])[0]

    def detect_stream(self, images: Iterable[np.ndarray], batch: int) -> Iterator[Detections]:
        """Detections for a stream of images, computed ``batch`` at a time, in order."""
        return detect_in_batches(self.detect, images, batch)


def detect_in_batches(
    detect: Callable[[list[np.ndarray]], list[Detections]],
    images: Iterable[np.ndarray],
    batch: int,
) -> Iterator[Detections]:
    """``detect`` (images → one :class:`Detections` each) over a stream of images, ``batch``
    images a call, in order."""
    chunk: list[np.ndarray] = []
    for image in images:
        chunk.append(image)
        if len(chunk) == batch:
            yield from detect(chunk)
            chunk = []
    yield from detect(chunk)


def _is_keras(model) -> bool:
    import keras

    return isinstance(model, keras.Model)


_FOLDABLE = ("Conv2D", "DepthwiseConv2D")


def fold_batchnorm(model):
    """An equivalent inference model with every BatchNormalization that directly follows a
    convolution folded into that convolution's kernel and bias.

    BN(conv(x)) = γ·(W∗x + b − μ)/√(σ² + ε) + β is a convolution with kernel ``W·s`` and bias
    ``(b − μ)·s + β``, ``s = γ/√(σ² + ε)`` per output channel: one pass over the activations
    instead of two. A BatchNormalization is folded when its only input is a linear Conv2D or
    DepthwiseConv2D whose output nothing else reads, channels last; any other is kept. The
    model's inputs, outputs and layer names are unchanged (a folded BN's name disappears). Returns
    ``model`` itself when nothing folds (a Sequential model, or no such pair).
    """
    import keras

    config = model.get_config()
    if "input_layers" not in config:
        return model
    specs = {spec["name"]: spec for spec in config["layers"]}
    readers: dict[str, int] = {}
    for name in _history_names(config["output_layers"]) + _history_names(
        [spec.get("inbound_nodes", []) for spec in config["layers"]]
    ):
        readers[name] = readers.get(name, 0) + 1
    folds = {}  # BatchNormalization name → convolution name
    for spec in config["layers"]:
        if spec["class_name"] != "BatchNormalization":
            continue
        sources = _history_names(spec.get("inbound_nodes", []))
        conv = specs.get(sources[0]) if len(sources) == 1 else None
        if (
            conv is not None
            and conv["class_name"] in _FOLDABLE
            and readers.get(conv["name"]) == 1
            and len(conv.get("inbound_nodes", [])) == 1
            and conv["config"].get("activation") in ("linear", None)
            and conv["config"].get("data_format", "channels_last") == "channels_last"
            and _bn_axis(spec["config"].get("axis"), conv) == "last"
        ):
            folds[spec["name"]] = conv["name"]
    if not folds:
        return model
    config["layers"] = [s for s in config["layers"] if s["name"] not in folds]
    for conv_name in folds.values():
        specs[conv_name]["config"]["use_bias"] = True
    config = _rename_history(config, folds)
    folded = keras.Model.from_config(config)
    bn_of = {conv: bn for bn, conv in folds.items()}
    for layer in folded.layers:
        source = model.get_layer(layer.name)
        if layer.name in bn_of:
            layer.set_weights(_folded_weights(source, model.get_layer(bn_of[layer.name])))
        else:
            layer.set_weights(source.get_weights())
    return folded


def _bn_axis(axis, conv_spec) -> str:
    axes = axis if isinstance(axis, list) else [axis]
    rank = len(conv_spec.get("build_config", {}).get("input_shape") or [None] * 4)
    return "last" if len(axes) == 1 and axes[0] in (-1, rank - 1) else "other"


def _history_names(node) -> list[str]:
    """Names of the layers that every ``keras_history`` under ``node`` points at (a layer's
    ``inbound_nodes``, a model's ``output_layers``), with repeats."""
    if isinstance(node, dict):
        if node.get("class_name") == "__keras_tensor__":
            return [node["config"]["keras_history"][0]]
        return [n for v in node.values() for n in _history_names(v)]
    if isinstance(node, list | tuple):
        if len(node) == 3 and isinstance(node[0], str) and isinstance(node[1], int):
            return [node[0]]  # an output_layers entry: [name, node index, tensor index]
        return [n for v in node for n in _history_names(v)]
    return []


def _rename_history(node, renames: dict[str, str]):
    """``node`` with every reference to a layer in ``renames`` pointing at its new name."""
    if isinstance(node, dict):
        if node.get("class_name") == "__keras_tensor__":
            history = node["config"]["keras_history"]
            history[0] = renames.get(history[0], history[0])
            return node
        return {k: _rename_history(v, renames) for k, v in node.items()}
    if isinstance(node, list | tuple):
        if len(node) == 3 and isinstance(node[0], str) and isinstance(node[1], int):
            return [renames.get(node[0], node[0]), *node[1:]]
        return [_rename_history(v, renames) for v in node]
    return node


def _folded_weights(conv, bn) -> list[np.ndarray]:
    """Kernel and bias of ``conv`` followed by the inference-mode ``bn`` (float64 arithmetic)."""
    import keras

    kernel = np.asarray(conv.kernel, np.float64)
    bias = np.asarray(conv.bias, np.float64) if conv.use_bias else 0.0
    mean = np.asarray(bn.moving_mean, np.float64)
    var = np.asarray(bn.moving_variance, np.float64)
    gamma = np.asarray(bn.gamma, np.float64) if bn.scale else 1.0
    beta = np.asarray(bn.beta, np.float64) if bn.center else 0.0
    scale = gamma / np.sqrt(var + bn.epsilon)
    if isinstance(conv, keras.layers.DepthwiseConv2D):  # output channel c·m + j ← input c
        kernel = kernel * scale.reshape(kernel.shape[2], kernel.shape[3])
    else:
        kernel = kernel * scale
    bias = (bias - mean) * scale + beta
    return [kernel.astype(np.float32), np.broadcast_to(bias, scale.shape).astype(np.float32)]


def _unletterbox(boxes, scores, classes, lb: Letterbox | Stretch, image: np.ndarray) -> Detections:
    h, w = image.shape[:2]
    return Detections(
        clip(lb.invert(boxes), w, h), scores.astype(np.float32), classes.astype(np.int32)
    )
