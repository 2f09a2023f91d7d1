"""The crop classifier behind both sliding-window baselines: model, training crops, training.

The network is the course's LeNet-5 (32×32×3 → 5×5 conv 8 → 2×2 max pool → 5×5 conv 16 →
2×2 max pool → FC 120 → FC 84 → softmax) with ``C + 1`` outputs: the C detection classes in
label order, then **background at index C**. Every convolution and pool is ``valid`` and the
dense layers sit after one Flatten, so :func:`yolo_cli.baselines.conv_window.to_convolutional`
can rewrite the dense layers as convolutions without retraining.

Why 32×32: it is LeNet-5's own input, the smallest size at which two 5×5 conv + pool stages
still leave a 5×5 map for the first FC layer; a 48×48 crop would cost about 2.3× the
multiply-adds per window for little gain on objects that the pyramid rescales to the crop
anyway. Training crops are square regions, as the detector's windows are: an object's
target window is the square of equal area centred on its box (:func:`object_squares`).
"""

from __future__ import annotations

import numpy as np

from yolo_cli.boxes import iou
from yolo_cli.config import DEFAULTS
from yolo_cli.errors import YoloError

FILTERS = (8, 16)  # LeNet-5 conv widths (course table)
UNITS = (120, 84)  # LeNet-5 FC widths
KERNEL = 5
POOL = 2
POSITIVE_IOU = 0.6  # jittered positive ↔ its object's square
NEGATIVE_IOU = 0.3  # background crop ↔ every object box and square
_JITTER_TRIES = 20


def build_classifier(
    num_classes: int,
    crop: int = DEFAULTS.window_crop,
    filters: tuple[int, int] = FILTERS,
    units: tuple[int, int] = UNITS,
):
    """LeNet-5 crop classifier: ``(batch, crop, crop, 3)`` float RGB 0..255 → ``(batch, C + 1)``.

    Outputs are softmax probabilities; index ``num_classes`` is background. The model rescales
    its input, so crops go in as raw pixel values. Stock layers only (safe-mode loadable).
    """
    import keras
    from keras import layers

    side = crop
    for _ in filters:
        side = (side - KERNEL + 1) // POOL
    if side < 1:
        raise ValueError(f"crop {crop} is too small for {len(filters)} conv+pool stages")
    return keras.Sequential(
        [
            keras.Input((crop, crop, 3), name="crop"),
            layers.Rescaling(1 / 255.0, name="rescale"),
            layers.Conv2D(filters[0], KERNEL, activation="relu", name="conv1"),
            layers.MaxPooling2D(POOL, name="pool1"),
            layers.Conv2D(filters[1], KERNEL, activation="relu", name="conv2"),
            layers.MaxPooling2D(POOL, name="pool2"),
            layers.Flatten(name="flatten"),
            layers.Dense(units[0], activation="relu", name="fc1"),
            layers.Dense(units[1], activation="relu", name="fc2"),
            layers.Dense(num_classes + 1, activation="softmax", name="probs"),
        ],
        name="window_classifier",
    )


def network_stride(model) -> int:
    """Total stride of the conv and pool layers: how far apart two windows of one map cell are."""
    from keras import layers

    stride = 1
    for layer in model.layers:
        if isinstance(layer, (layers.Conv2D, layers.MaxPooling2D, layers.AveragePooling2D)):
            stride *= int(layer.strides[0])
    return stride


def model_macs(model, height: int, width: int) -> int:
    """Multiply-adds of one forward pass of a layer chain on a ``height × width`` input
    (:func:`yolo_cli.summary.layer_macs` per layer, shapes carried along the chain)."""
    from keras import layers

    from yolo_cli.summary import layer_macs

    shape = (1, height, width, model.input_shape[-1])
    total = 0
    for layer in model.layers:
        if isinstance(layer, layers.InputLayer):
            continue
        out = tuple(layer.compute_output_shape(shape))
        total += layer_macs(layer, shape, out)
        shape = out
    return int(total)


def object_squares(boxes: np.ndarray) -> np.ndarray:
    """The square window each object should fire: equal area, same centre.

    boxes: ``(N, 4)`` xyxy pixels → ``(N, 4)`` xyxy pixels, side ``sqrt(w·h)``.
    """
    b = np.asarray(boxes, np.float32).reshape(-1, 4)
    centre = (b[:, :2] + b[:, 2:]) / 2
    half = np.sqrt(np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)) / 2
    return np.concatenate([centre - half[:, None], centre + half[:, None]], axis=1)


def _fit_square(cx: float, cy: float, side: float, width: int, height: int) -> np.ndarray:
    """A square of ``side`` centred near (cx, cy), shrunk and shifted to lie inside the image."""
    side = min(side, width, height)
    x1 = min(max(cx - side / 2, 0.0), width - side)
    y1 = min(max(cy - side / 2, 0.0), height - side)
    return np.array([x1, y1, x1 + side, y1 + side], np.float32)


def sample_windows(
    boxes: np.ndarray,
    classes: np.ndarray,
    width: int,
    height: int,
    crop: int,
    n: int,
    rng: np.random.Generator,
    scales=DEFAULTS.window_scales,
) -> tuple[np.ndarray, np.ndarray]:
    """Square training windows of one image and their labels (the geometry of :func:`sample_crops`).

    boxes ``(M, 4)`` xyxy pixels, classes ``(M,)``. Up to ``n`` positives — each a random object's
    square (:func:`object_squares`) shifted by up to 20 % of its side and scaled by up to
    2^±0.25, kept when its IoU with that square is ≥ :data:`POSITIVE_IOU` — and up to ``n``
    negatives: squares of the pyramid's window sides (``crop / scale``) placed uniformly or
    near an object, kept when their IoU with every box and square is < :data:`NEGATIVE_IOU`.
    Returns ``windows (K, 4)`` float32 xyxy pixels inside the image and ``labels (K,)`` int32:
    the object's class, or ``-1`` for background.
    """
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    classes = np.asarray(classes, np.int32).reshape(-1)
    squares = object_squares(boxes)
    windows, labels = [], []
    for _ in range(n if len(boxes) else 0):
        k = int(rng.integers(len(boxes)))
        side0 = float(squares[k, 2] - squares[k, 0])
        cx0, cy0 = (squares[k, :2] + squares[k, 2:]) / 2
        for _ in range(_JITTER_TRIES):
            shift = rng.uniform(-0.2, 0.2, 2) * side0
            side = side0 * 2.0 ** rng.uniform(-0.25, 0.25)
            w = _fit_square(cx0 + shift[0], cy0 + shift[1], side, width, height)
            if iou(w, squares[k])[0, 0] >= POSITIVE_IOU:
                windows.append(w)
                labels.append(classes[k])
                break
    sides = [crop / s for s in scales if crop / s <= min(width, height)]
    objects = np.concatenate([boxes, squares])
    for _ in range(n if sides else 0):
        for _ in range(_JITTER_TRIES):
            side = float(rng.choice(sides))
            if len(boxes) and rng.random() < 0.5:  # near an object: teach "part is not whole"
                k = int(rng.integers(len(boxes)))
                cx, cy = (squares[k, :2] + squares[k, 2:]) / 2 + rng.uniform(-1.5, 1.5, 2) * side
            else:
                cx, cy = rng.uniform(0, width), rng.uniform(0, height)
            w = _fit_square(cx, cy, side, width, height)
            if not len(boxes) or iou(w, objects).max() < NEGATIVE_IOU:
                windows.append(w)
                labels.append(-1)
                break
    return np.array(windows, np.float32).reshape(-1, 4), np.array(labels, np.int32)


def crop_window(image: np.ndarray, window: np.ndarray, crop: int) -> np.ndarray:
    """Cut the xyxy pixel ``window`` out of an ``(H, W, 3)`` uint8 image → ``(crop, crop, 3)`` uint8.

    Resampled as the detector's pyramid is (area averaging when shrinking, bilinear otherwise).
    """
    import cv2

    x1, y1, x2, y2 = (int(round(float(v))) for v in window)
    patch = image[y1 : max(y2, y1 + 1), x1 : max(x2, x1 + 1)]
    interp = cv2.INTER_AREA if patch.shape[0] > crop else cv2.INTER_LINEAR
    return cv2.resize(patch, (crop, crop), interpolation=interp)


def sample_crops(
    dataset,
    crop: int = DEFAULTS.window_crop,
    n_per_image: int = DEFAULTS.window_crops_per_image,
    rng: np.random.Generator | None = None,
    scales=DEFAULTS.window_scales,
) -> tuple[np.ndarray, np.ndarray]:
    """Training crops of a :class:`~yolo_cli.data.dataset.Dataset` for the crop classifier.

    Per image, up to ``n_per_image`` jittered object crops and ``n_per_image`` background crops
    (:func:`sample_windows`). Unreadable images are skipped and counted in
    ``dataset.problems``. Returns ``crops (N, crop, crop, 3)`` uint8 RGB and ``labels (N,)``
    int32: the class id, or ``len(dataset.names)`` for background.
    """
    from yolo_cli.data.image import read_image

    rng = rng if rng is not None else np.random.default_rng(DEFAULTS.seed)
    background = len(dataset.names)
    crops, labels = [], []
    for sample in dataset.samples:
        try:
            image = read_image(sample.image)
        except YoloError as e:
            dataset.problems.add(sample.image, "corrupt-image", str(e))
            continue
        height, width = image.shape[:2]
        windows, lab = sample_windows(
            sample.boxes, sample.classes, width, height, crop, n_per_image, rng, scales
        )
        crops.extend(crop_window(image, w, crop) for w in windows)
        labels.extend(np.where(lab < 0, background, lab))
    return (
        np.array(crops, np.uint8).reshape(-1, crop, crop, 3),
        np.array(labels, np.int32),
    )


def class_weights(labels: np.ndarray, num_outputs: int) -> dict[int, float]:
    """Balanced class weights ``N / (K · count_k)`` over the labels present (K of them)."""
    counts = np.bincount(np.asarray(labels, np.int64), minlength=num_outputs)
    present = np.flatnonzero(counts)
    return {int(k): float(len(labels) / (len(present) * counts[k])) for k in present}


def train_classifier(
    dataset,
    epochs: int = DEFAULTS.epochs,
    crop: int = DEFAULTS.window_crop,
    seed: int = DEFAULTS.seed,
    n_per_image: int = DEFAULTS.window_crops_per_image,
    scales=DEFAULTS.window_scales,
    batch: int = DEFAULTS.batch * 4,  # crops are tiny next to whole images
    lr: float = DEFAULTS.lr,
    verbose: int = 0,
):
    """Train the crop classifier on ``dataset`` and return the ``keras.Model``.

    Crops come from :func:`sample_crops` (seeded by ``seed``), doubled by horizontal mirroring;
    class imbalance (objects vs background, and between classes) is evened out with
    :func:`class_weights`. Plain ``model.fit`` with Adam and sparse cross-entropy.
    """
    import keras

    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    crops, labels = sample_crops(dataset, crop, n_per_image, rng, scales)
    if not len(crops):
        raise YoloError(f"{dataset.root}: no training crops (no readable images)")
    crops = np.concatenate([crops, crops[:, :, ::-1]])
    labels = np.concatenate([labels, labels])
    num_outputs = len(dataset.names) + 1
    model = build_classifier(len(dataset.names), crop)
    model.compile(
        optimizer=keras.optimizers.Adam(lr),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    model.fit(
        crops.astype(np.float32),
        labels,
        batch_size=batch,
        epochs=epochs,
        shuffle=True,
        class_weight=class_weights(labels, num_outputs),
        verbose=verbose,
    )
    return model
