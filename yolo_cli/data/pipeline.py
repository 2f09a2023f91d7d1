"""The ``tf.data`` input pipeline: a :class:`Dataset` → batches of model inputs and targets.

One call builds one epoch, or several consecutive epochs as one stream (training builds one
pipeline for the whole run: a fresh pipeline per epoch left threads behind that slowed later
training steps by half). Per sample, in parallel: read and decode the image, letterbox it
(:func:`~yolo_cli.data.augment.prepare`) or augment it (:func:`~yolo_cli.data.augment.augment`),
encode the target grid (:func:`~yolo_cli.targets.encode_targets`); then batch and prefetch.

Determinism: the shuffle order comes from ``(seed, epoch)`` and each sample's augmentation from
its own generator seeded by ``(seed, epoch, sample index)``, so batches do not depend on thread
scheduling and a resumed run that rebuilds epoch ``e`` sees exactly the same data.

The per-sample work runs in ``tf.numpy_function`` over OpenCV (which releases the GIL): target
encoding is numpy anyway, the letterbox is the very one detection uses, and on the 2-core CPU
read + decode + letterbox in OpenCV ran about as fast as pure TensorFlow at the same resize
quality (``bench_pipeline.py``, benchmarks/README.md).
"""

from __future__ import annotations

import logging

import numpy as np

from yolo_cli.boxes import Letterbox
from yolo_cli.config import DEFAULTS
from yolo_cli.data.augment import Augmentation, augment, pca_colour_basis, prepare
from yolo_cli.data.dataset import Dataset, Sample
from yolo_cli.data.image import read_image
from yolo_cli.errors import YoloError
from yolo_cli.targets import encode_targets, pad_boxes

log = logging.getLogger(__name__)

_warned: set[str] = set()  # unreadable files already reported by this process


def sample_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The generator that draws sample ``index``'s augmentation in ``epoch``."""
    return np.random.default_rng([seed, epoch, index])


def epoch_order(num_samples: int, seed: int, epoch: int, shuffle: bool) -> np.ndarray:
    """Sample indices ``(num_samples,)`` int64 in the order epoch ``epoch`` visits them."""
    if not shuffle:
        return np.arange(num_samples, dtype=np.int64)
    return np.random.default_rng([seed, epoch]).permutation(num_samples).astype(np.int64)


def dataset_colour_basis(
    dataset: Dataset, max_images: int = 32
) -> tuple[np.ndarray, np.ndarray] | None:
    """:func:`pca_colour_basis` of up to ``max_images`` evenly spaced readable images.

    Returns None when no image can be read.
    """
    picks = np.unique(np.linspace(0, len(dataset) - 1, min(max_images, len(dataset))).astype(int))
    images = []
    for i in picks:
        try:
            images.append(read_image(dataset.samples[i].image))
        except YoloError:
            continue
    return pca_colour_basis(images) if images else None


def load_example(
    sample: Sample,
    rng: np.random.Generator | None,
    anchors: np.ndarray,
    img_size: int,
    num_classes: int,
    max_boxes: int,
    params: Augmentation | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One sample → ``image (img_size, img_size, 3)`` uint8, ``grid (S, S, A, 5 + C)`` float32
    and ``boxes (max_boxes, 4)`` float32 xyxy input pixels.

    ``rng`` None takes the plain letterbox path; otherwise :func:`augment` with ``params``.
    Raises :class:`YoloError` when the image cannot be read.
    """
    image = read_image(sample.image)
    if rng is None:
        image, boxes, classes = prepare(image, sample.boxes, sample.classes, img_size)
    else:
        image, boxes, classes = augment(image, sample.boxes, sample.classes, rng, img_size, params)
    grid, _ = encode_targets(
        boxes, classes, anchors, img_size, img_size // DEFAULTS.stride, num_classes
    )
    return image, grid, pad_boxes(boxes, max_boxes)


def make_dataset(
    dataset: Dataset,
    anchors: np.ndarray,
    img_size: int,
    num_classes: int,
    batch_size: int,
    augment: bool,
    seed: int,
    epoch: int = 0,
    shuffle: bool | None = None,
    max_boxes: int = DEFAULTS.max_boxes,
    drop_remainder: bool = False,
    params: Augmentation | None = None,
    epochs: int = 1,
    batches_per_epoch: int | None = None,
):
    """Epochs ``epoch … epoch + epochs − 1`` of ``dataset`` as one ``tf.data.Dataset`` of
    ``(images, targets)`` batches.

    images: ``(B, img_size, img_size, 3)`` float32 RGB in 0..255; targets: ``{"grid":
    (B, S, S, A, 5 + C) float32, "boxes": (B, max_boxes, 4) float32 xyxy input pixels}`` with
    ``S = img_size // 32`` and ``A = len(anchors)`` (anchors ``(A, 2)`` w, h input pixels).
    ``shuffle`` defaults to ``augment``. With ``augment``, ``params`` defaults to
    :class:`Augmentation` with a PCA colour basis from :func:`dataset_colour_basis` (pass
    ``params`` to compute that basis once per run rather than per epoch).
    With ``drop_remainder`` every epoch ends on a whole batch, so no batch spans two epochs;
    ``batches_per_epoch`` cuts each epoch shorter still.
    Samples whose image cannot be read are skipped with one warning per file.
    """
    import tensorflow as tf

    anchors = np.asarray(anchors, np.float32).reshape(-1, 2)
    grid_size = img_size // DEFAULTS.stride
    if augment and params is None:
        params = Augmentation(pca=dataset_colour_basis(dataset))
    shuffle = augment if shuffle is None else shuffle
    per_epoch = len(dataset) // batch_size * batch_size if drop_remainder else len(dataset)
    if batches_per_epoch is not None:
        per_epoch = min(per_epoch, batches_per_epoch * batch_size)
    visits = np.concatenate(
        [
            np.stack(
                [np.full(per_epoch, e), epoch_order(len(dataset), seed, e, shuffle)[:per_epoch]], 1
            )
            for e in range(epoch, epoch + epochs)
        ]
    ).astype(np.int64)
    samples = dataset.samples

    def load(visit: np.ndarray):
        epoch, index = int(visit[0]), int(visit[1])
        sample = samples[index]
        rng = sample_rng(seed, epoch, index) if augment else None
        try:
            image, grid, boxes = load_example(
                sample, rng, anchors, img_size, num_classes, max_boxes, params
            )
        except YoloError as e:
            if str(sample.image) not in _warned:
                _warned.add(str(sample.image))
                log.warning("%s (sample skipped)", e)
            return (
                np.zeros((img_size, img_size, 3), np.uint8),
                np.zeros((grid_size, grid_size, len(anchors), 5 + num_classes), np.float32),
                np.zeros((max_boxes, 4), np.float32),
                False,
            )
        return image, grid, boxes, True

    def load_tf(visit):
        image, grid, boxes, ok = tf.numpy_function(
            load, [visit], [tf.uint8, tf.float32, tf.float32, tf.bool], stateful=False
        )
        image.set_shape((img_size, img_size, 3))
        grid.set_shape((grid_size, grid_size, len(anchors), 5 + num_classes))
        boxes.set_shape((max_boxes, 4))
        ok.set_shape(())
        return image, grid, boxes, ok

    def to_model(image, grid, boxes):
        return tf.cast(image, tf.float32), {"grid": grid, "boxes": boxes}

    return (
        tf.data.Dataset.from_tensor_slices(visits)
        .map(load_tf, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        .filter(lambda image, grid, boxes, ok: ok)
        .map(lambda image, grid, boxes, ok: (image, grid, boxes))
        .batch(batch_size, drop_remainder=drop_remainder)
        .map(to_model, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        .prefetch(tf.data.AUTOTUNE)
    )


def collision_count(
    dataset: Dataset, anchors: np.ndarray, img_size: int, num_classes: int
) -> tuple[int, int]:
    """How many boxes target encoding drops (their cell's anchors all taken), on the plain
    letterbox path; no image is read. Returns ``(dropped, total boxes)``."""
    anchors = np.asarray(anchors, np.float32).reshape(-1, 2)
    grid_size = img_size // DEFAULTS.stride
    dropped = 0
    for s in dataset.samples:
        if len(s.boxes) == 0:
            continue
        boxes = Letterbox.fit(s.width, s.height, img_size).apply(s.boxes)
        dropped += encode_targets(boxes, s.classes, anchors, img_size, grid_size, num_classes)[1]
    return dropped, dataset.num_objects()
