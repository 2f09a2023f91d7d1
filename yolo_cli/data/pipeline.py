"""The ``tf.data`` input pipeline: a :class:`Dataset` → batches of model inputs and one target
per head.

One call builds one epoch, or several consecutive epochs as one stream (training builds one
pipeline for the whole run: a fresh pipeline per epoch leaves threads behind that slow later
training steps). Per sample, in parallel: read and decode the image, letterbox it
(:func:`~yolo_cli.data.augment.prepare`) or augment it — a mosaic with three other samples
(:func:`~yolo_cli.data.augment.mosaic`) or alone (:func:`~yolo_cli.data.augment.augment`) —,
assign the boxes to the heads' slots (:func:`~yolo_cli.targets.assign_targets`); then batch and
prefetch.

Determinism: the shuffle order comes from ``(seed, epoch)`` and each sample's augmentation —
the mosaic's other three samples included — from its own generator seeded by
``(seed, epoch, sample index)``, so batches do not depend on thread scheduling and a resumed
run that rebuilds epoch ``e`` sees exactly the same data.

The per-sample work runs in ``tf.numpy_function`` over OpenCV (which releases the GIL): target
assignment is numpy anyway, the letterbox is the very one detection uses, and read + decode +
letterbox in OpenCV is about as fast as pure TensorFlow at the same resize quality
(``benchmarks/bench_pipeline.py``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence

import numpy as np

from yolo_cli.boxes import Letterbox
from yolo_cli.config import DEFAULTS
from yolo_cli.data.augment import Augmentation, augment, mosaic, pca_colour_basis, prepare
from yolo_cli.data.dataset import Dataset, Sample
from yolo_cli.data.image import read_image
from yolo_cli.errors import YoloError
from yolo_cli.targets import assign_targets, pad_boxes

log = logging.getLogger(__name__)

_warned: set[str] = set()  # unreadable files already reported by this process
_DRAWS_PER_COMPANION = 3  # a mosaic draws again for an unreadable companion, this many times


def sample_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The generator that draws sample ``index``'s augmentation in ``epoch``."""
    return np.random.default_rng([seed, epoch, index])


def epoch_order(num_samples: int, seed: int, epoch: int, shuffle: bool) -> np.ndarray:
    """Sample indices ``(num_samples,)`` int64 in the order epoch ``epoch`` visits them."""
    if not shuffle:
        return np.arange(num_samples, dtype=np.int64)
    return np.random.default_rng([seed, epoch]).permutation(num_samples).astype(np.int64)


class ImageCache:
    """Decoded images kept in memory up to ``max_bytes``, first come first kept (nothing is
    evicted), made read-only. A mosaic reads four images per training image, and decoding is
    most of its cost: kept, each image is decoded once per stream rather than at every use.
    Images are what :func:`read_image` returns, so batches are the same with or without it."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self.bytes = 0
        self._images: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()

    def read(self, path) -> np.ndarray:
        """:func:`read_image` of ``path``, from memory when kept; raises as it does."""
        key = str(path)
        image = self._images.get(key)
        if image is not None:
            return image
        image = read_image(path)
        with self._lock:
            if key not in self._images and self.bytes + image.nbytes <= self.max_bytes:
                image.flags.writeable = False
                self._images[key] = image
                self.bytes += image.nbytes
        return image


def _skipped(path, error: YoloError) -> None:
    """Warn once per file (per process) that its sample is skipped."""
    if str(path) not in _warned:
        _warned.add(str(path))
        log.warning("%s (sample skipped)", error)


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


def companions(
    samples: Sequence[Sample],
    rng: np.random.Generator,
    count: int = 3,
    read: Callable[[object], np.ndarray] = read_image,
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``count`` samples drawn uniformly (with replacement) by ``rng``, read by ``read``:
    ``(image, boxes, classes)`` each. An unreadable one is warned about and another drawn, up
    to ``3 · count`` draws in all, so fewer may come back."""
    parts = []
    for _ in range(_DRAWS_PER_COMPANION * count):
        if len(parts) == count:
            break
        sample = samples[int(rng.integers(len(samples)))]
        try:
            parts.append((read(sample.image), sample.boxes, sample.classes))
        except YoloError as e:
            _skipped(sample.image, e)
    return parts


def training_example(
    samples: Sequence[Sample],
    index: int,
    rng: np.random.Generator,
    img_size: int,
    params: Augmentation,
    allow_mosaic: bool = True,
    read: Callable[[object], np.ndarray] = read_image,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sample ``index`` augmented → ``image (img_size, img_size, 3)`` uint8, ``boxes (M, 4)``
    float32 xyxy input pixels, ``classes (M,)`` int32.

    With ``allow_mosaic``, ``rng`` first draws whether it is a mosaic (``params.mosaic_p``)
    and if so its three :func:`companions`; without three readable ones the image goes alone.
    Images are read by ``read``. Raises :class:`YoloError` when sample ``index``'s image cannot
    be read.
    """
    sample = samples[index]
    image = read(sample.image)
    if allow_mosaic and params.mosaic_p > 0 and rng.random() < params.mosaic_p:
        others = companions(samples, rng, read=read)
        if len(others) == 3:
            return mosaic([(image, sample.boxes, sample.classes), *others], rng, img_size, params)
    return augment(image, sample.boxes, sample.classes, rng, img_size, params)


def make_dataset(
    dataset: Dataset,
    heads: Sequence,
    img_size: int,
    num_classes: int,
    batch_size: int,
    augment: bool,
    seed: int,
    epoch: int = 0,
    *,
    rule: str = "best",
    anchor_t: float = DEFAULTS.anchor_t,
    shuffle: bool | None = None,
    max_boxes: int = DEFAULTS.max_boxes,
    drop_remainder: bool = False,
    params: Augmentation | None = None,
    epochs: int = 1,
    batches_per_epoch: int | None = None,
    mosaic_until_epoch: int | None = None,
    cache_bytes: int | None = None,
):
    """Epochs ``epoch … epoch + epochs − 1`` of ``dataset`` as one ``tf.data.Dataset`` of
    ``(images, targets)`` batches.

    images: ``(B, img_size, img_size, 3)`` float32 RGB in 0..255; targets: ``{"grids": tuple
    of (B, S_h, S_h, B_h, 5 + C) float32, one per head in ``heads`` order, "boxes": (B,
    max_boxes, 4) float32 xyxy input pixels}`` — heads: :class:`yolo_cli.modelfile.Head` list,
    ``S_h = img_size // stride``, ``B_h`` its anchors; slots assigned by ``rule`` (``best`` or
    ``ratio`` with ``anchor_t``, :func:`yolo_cli.targets.assign_targets`).
    ``shuffle`` defaults to ``augment``. With ``augment``, ``params`` defaults to
    :class:`Augmentation` with a PCA colour basis from :func:`dataset_colour_basis` (pass
    ``params`` to compute that basis once per run rather than per stream); epochs from
    ``mosaic_until_epoch`` on (when given) make no mosaics: YOLOv8's ``close_mosaic``, a run of
    ``E`` epochs passing ``E − N`` to train its last ``N`` on whole images.
    With ``drop_remainder`` every epoch ends on a whole batch, so no batch spans two epochs;
    ``batches_per_epoch`` cuts each epoch shorter still.
    Decoded images are kept in memory up to ``cache_bytes`` for the stream's life
    (:class:`ImageCache`); the default is ``DEFAULTS.image_cache_mb`` MiB, or none for a single
    plain pass, which reads each image once.
    Samples whose image cannot be read are skipped with one warning per file.
    """
    import tensorflow as tf

    heads = list(heads)
    shapes = [(h.grid(img_size), h.grid(img_size), len(h.anchors), 5 + num_classes) for h in heads]
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
    if cache_bytes is None:
        cache_bytes = DEFAULTS.image_cache_mb << 20 if augment or epochs > 1 else 0
    read = ImageCache(cache_bytes).read

    def load(visit: np.ndarray):
        epoch, index = int(visit[0]), int(visit[1])
        sample = samples[index]
        try:
            if augment:
                rng = sample_rng(seed, epoch, index)
                allow = mosaic_until_epoch is None or epoch < mosaic_until_epoch
                image, boxes, classes = training_example(
                    samples, index, rng, img_size, params, allow, read
                )
            else:
                image, boxes, classes = prepare(
                    read(sample.image), sample.boxes, sample.classes, img_size
                )
        except YoloError as e:
            _skipped(sample.image, e)
            image = np.zeros((img_size, img_size, 3), np.uint8)
            grids = [np.zeros(s, np.float32) for s in shapes]
            return image, *grids, np.zeros((max_boxes, 4), np.float32), False
        grids, _ = assign_targets(boxes, classes, heads, img_size, num_classes, rule, anchor_t)
        return image, *grids, pad_boxes(boxes, max_boxes), True

    def load_tf(visit):
        out = tf.numpy_function(
            load,
            [visit],
            [tf.uint8, *[tf.float32] * len(heads), tf.float32, tf.bool],
            stateful=False,
        )
        for tensor, shape in zip(
            out, [(img_size, img_size, 3), *shapes, (max_boxes, 4), ()], strict=True
        ):
            tensor.set_shape(shape)
        return tuple(out)

    def to_model(image, *targets):
        return tf.cast(image, tf.float32), {"grids": tuple(targets[:-1]), "boxes": targets[-1]}

    return (
        tf.data.Dataset.from_tensor_slices(visits)
        .map(load_tf, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        .filter(lambda *example: example[-1])
        .map(lambda *example: example[:-1])
        .batch(batch_size, drop_remainder=drop_remainder)
        .map(to_model, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        .prefetch(tf.data.AUTOTUNE)
    )


def collision_count(
    dataset: Dataset,
    heads: Sequence,
    img_size: int,
    num_classes: int,
    rule: str = "best",
    anchor_t: float = DEFAULTS.anchor_t,
) -> tuple[int, int]:
    """How many boxes target assignment drops (every slot they could take is taken), on the
    plain letterbox path; no image is read. Returns ``(dropped, total boxes)``."""
    dropped = 0
    for s in dataset.samples:
        if len(s.boxes) == 0:
            continue
        boxes = Letterbox.fit(s.width, s.height, img_size).apply(s.boxes)
        dropped += assign_targets(boxes, s.classes, heads, img_size, num_classes, rule, anchor_t)[1]
    return dropped, dataset.num_objects()
