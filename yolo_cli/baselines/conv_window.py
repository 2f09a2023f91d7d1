"""The convolutional implementation of sliding windows (course: "turning FC layers into
convolutional layers").

The trained crop classifier is rebuilt with each dense layer as a convolution: the first dense
layer, which read the Flatten of an ``(h, w, c)`` map, becomes an ``h × w`` convolution whose
kernel is the dense kernel reshaped to ``(h, w, c, units)`` (Keras flattens row-major h, w, c);
later dense layers become 1×1 convolutions. Nothing is retrained. On a whole pyramid level the
network then outputs a map of class probabilities whose cell ``(i, j)`` is the window with
origin ``(stride · j, stride · i)``, ``stride`` being the product of the conv and pool strides;
neighbouring windows share every intermediate feature instead of recomputing it.
"""

from __future__ import annotations

import numpy as np

from yolo_cli.baselines.classifier import model_macs, network_stride
from yolo_cli.baselines.window import pyramid, window_boxes, windows_to_detections
from yolo_cli.config import DEFAULTS
from yolo_cli.postprocess import Detections

# Layers that act on each position (or are valid convolutions/pools), so they are copied as is.
_COPYABLE = (
    "Rescaling",
    "Conv2D",
    "MaxPooling2D",
    "AveragePooling2D",
    "Activation",
    "ReLU",
    "LeakyReLU",
    "Softmax",
    "Dropout",
    "BatchNormalization",
)


def is_convolutional(model) -> bool:
    """Whether ``model`` takes images of any size (the output of :func:`to_convolutional`)."""
    return model.input_shape[1] is None


def to_convolutional(model):
    """The crop classifier with its dense layers as convolutions, input ``(None, None, 3)``.

    model: a chain of layers ending Flatten → Dense…, every conv and pool ``valid`` (padding
    would make a window's border depend on its neighbours). Weights are copied, dense kernels
    reshaped; the parameter count is unchanged. On a ``crop × crop`` input the result outputs
    ``(1, 1, 1, C + 1)``, the classifier's probabilities. Raises ValueError for other layers.
    """
    import keras
    from keras import layers

    shape = tuple(model.input_shape)
    inputs = keras.Input((None, None, shape[-1]), name="image")
    x = inputs
    copies = []  # (new layer, weights)
    flat = None  # the (h, w, c) map the Flatten read
    for layer in model.layers:
        if isinstance(layer, layers.InputLayer):
            continue
        out = tuple(layer.compute_output_shape(shape))
        kind = type(layer).__name__
        if isinstance(layer, layers.Flatten):
            flat = shape[1:]
        elif isinstance(layer, layers.Dense):
            kernel, *bias = layer.get_weights()
            size = flat[:2] if flat is not None else (1, 1)
            new = layers.Conv2D(
                layer.units,
                size,
                activation=layer.activation,
                use_bias=layer.use_bias,
                name=layer.name,
            )
            copies.append((new, [kernel.reshape(*size, -1, layer.units), *bias]))
            x = new(x)
            flat = None
        elif kind in _COPYABLE:
            if getattr(layer, "padding", "valid") != "valid":
                raise ValueError(f"layer {layer.name}: padding must be 'valid' to slide windows")
            new = type(layer).from_config(layer.get_config())
            copies.append((new, layer.get_weights()))
            x = new(x)
        else:
            raise ValueError(f"layer {layer.name}: cannot convert a {kind} layer to a convolution")
        shape = out
    conv = keras.Model(inputs, x, name=f"{model.name}_conv")
    for new, weights in copies:
        new.set_weights(weights)
    return conv


def _level_extent(n_windows: int, crop: int, stride: int) -> int:
    """Pixels a level needs for ``n_windows`` windows; the rest would only pad the map."""
    return crop + (n_windows - 1) * stride


def conv_window_probabilities(
    model, meta, image: np.ndarray, scales=DEFAULTS.window_scales
) -> tuple[np.ndarray, np.ndarray]:
    """Class probabilities of every window, one convolutional pass per pyramid level.

    model: the crop classifier or its :func:`to_convolutional` form (convert once and pass that
    when detecting many images). image: ``(H, W, 3)`` uint8 RGB; ``meta.img_size`` is the crop.
    Returns ``boxes (N, 4)`` float32 xyxy original pixels and ``probs (N, C + 1)``, in the
    same order as :func:`yolo_cli.baselines.window.window_probabilities` at the network stride.
    """
    conv = model if is_convolutional(model) else to_convolutional(model)
    crop, stride = meta.img_size, network_stride(conv)
    boxes, probs = [], []
    for level in pyramid(*image.shape[:2], scales, crop):
        rows, cols = level.grid(crop, stride)
        pixels = level.resize(image)[
            : _level_extent(rows, crop, stride), : _level_extent(cols, crop, stride)
        ]
        # predict_on_batch runs a traced function: an eager Keras call costs ~15 ms more each
        cell_probs = np.asarray(conv.predict_on_batch(pixels[None].astype(np.float32)))[0]
        if cell_probs.shape[:2] != (rows, cols):
            raise ValueError(f"map {cell_probs.shape[:2]} does not match windows {(rows, cols)}")
        boxes.append(window_boxes(level, crop, stride))
        probs.append(cell_probs.reshape(rows * cols, -1))
    if not boxes:
        return np.zeros((0, 4), np.float32), np.zeros((0, meta.num_classes + 1), np.float32)
    return np.concatenate(boxes), np.concatenate(probs)


def conv_window_detect(
    model,
    meta,
    image: np.ndarray,
    scales=DEFAULTS.window_scales,
    conf_threshold: float = DEFAULTS.conf_threshold,
    nms_iou: float = DEFAULTS.nms_iou,
    max_det: int = DEFAULTS.max_det,
    box_vote: bool = DEFAULTS.box_vote,
) -> tuple[Detections, int]:
    """Convolutional sliding-window detection of one ``(H, W, 3)`` uint8 RGB image.

    Same outputs as :func:`yolo_cli.baselines.window.sliding_window_detect` with ``stride`` the
    network's total stride: Detections in original pixels and the number of windows classified.
    """
    boxes, probs = conv_window_probabilities(model, meta, image, scales)
    detections = windows_to_detections(boxes, probs, conf_threshold, nms_iou, max_det, box_vote)
    return detections, len(boxes)


def conv_window_cost(
    model, meta, image_shape: tuple[int, int], scales=DEFAULTS.window_scales
) -> tuple[int, int]:
    """``(windows, multiply-adds)`` of :func:`conv_window_detect` on an ``(H, W)`` image.

    MACs are the convolutional network's at each level's size, so computation shared between
    overlapping windows is counted once.
    """
    conv = model if is_convolutional(model) else to_convolutional(model)
    crop, stride = meta.img_size, network_stride(conv)
    windows = macs = 0
    for level in pyramid(*image_shape, scales, crop):
        rows, cols = level.grid(crop, stride)
        windows += rows * cols
        macs += model_macs(
            conv, _level_extent(rows, crop, stride), _level_extent(cols, crop, stride)
        )
    return windows, macs
