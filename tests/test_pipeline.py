"""The tf.data pipeline on small rendered datasets written to disk: shapes, determinism, targets
that decode back to the letterboxed boxes, unreadable images skipped."""

from __future__ import annotations

import logging

import cv2
import numpy as np
import pytest
import tensorflow as tf

from yolo_cli.boxes import Letterbox
from yolo_cli.config import datasets_root
from yolo_cli.data.augment import Augmentation
from yolo_cli.data.dataset import Dataset, Sample
from yolo_cli.data.load import load_dataset
from yolo_cli.data.pipeline import collision_count, epoch_order, make_dataset
from yolo_cli.postprocess import grid_to_boxes
from yolo_cli.targets import pad_boxes

SIZE = 128  # S = 4
GRID = SIZE // 32
NUM_CLASSES = 3
ANCHORS = np.array([[16, 16], [40, 30], [30, 60]], np.float32)
COLOURS = [(255, 40, 40), (40, 255, 40), (40, 40, 255)]


def write_scene(path, rng, width, height):
    """Noisy background with 1–5 filled rectangles of class-coloured pixels, written as PNG.

    Returns boxes ``(N, 4)`` xyxy px and classes ``(N,)``."""
    image = rng.integers(60, 191, (height, width, 3), dtype=np.uint8)
    n = int(rng.integers(1, 6))
    wh = rng.integers(12, min(width, height) // 2, (n, 2))
    xy = rng.integers(0, [width, height] - wh)
    boxes = np.concatenate([xy, xy + wh], 1).astype(np.float32)
    classes = rng.integers(0, NUM_CLASSES, n).astype(np.int32)
    for (x1, y1, x2, y2), c in zip(boxes.astype(int), classes, strict=True):
        image[y1:y2, x1:x2] = COLOURS[c]
    cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return boxes, classes


def make_scenes(folder, n, seed=0) -> Dataset:
    rng = np.random.default_rng(seed)
    samples = []
    for i in range(n):
        width, height = int(rng.integers(100, 220)), int(rng.integers(80, 200))
        path = folder / f"scene_{i:03d}.png"
        boxes, classes = write_scene(path, rng, width, height)
        samples.append(Sample(path, boxes, classes, width, height))
    return Dataset(["r", "g", "b"], samples, "synth", folder)


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    return make_scenes(tmp_path_factory.mktemp("scenes"), 11)


def batches(ds):
    return [(x.numpy(), {k: v.numpy() for k, v in y.items()}) for x, y in ds]


def build(dataset, augment, seed=0, epoch=0, **kw):
    return make_dataset(dataset, ANCHORS, SIZE, NUM_CLASSES, 4, augment, seed, epoch, **kw)


def test_shapes_and_dtypes(scenes):
    out = batches(build(scenes, True))
    assert [len(x) for x, _ in out] == [4, 4, 3]
    images, targets = out[0]
    assert images.shape == (4, SIZE, SIZE, 3) and images.dtype == np.float32
    assert 0 <= images.min() and images.max() <= 255 and images.max() > 1
    assert targets["grid"].shape == (4, GRID, GRID, len(ANCHORS), 5 + NUM_CLASSES)
    assert targets["grid"].dtype == np.float32
    assert targets["boxes"].shape == (4, 100, 4) and targets["boxes"].dtype == np.float32
    spec = build(scenes, False).element_spec
    assert spec[0].shape.as_list() == [None, SIZE, SIZE, 3]
    assert [len(x) for x, _ in batches(build(scenes, False, drop_remainder=True))] == [4, 4]


def test_same_seed_and_epoch_give_identical_batches(scenes):
    for augment in (True, False):
        a = batches(build(scenes, augment, seed=3, epoch=2))
        b = batches(build(scenes, augment, seed=3, epoch=2))
        for (xa, ya), (xb, yb) in zip(a, b, strict=True):
            np.testing.assert_array_equal(xa, xb)
            np.testing.assert_array_equal(ya["grid"], yb["grid"])
            np.testing.assert_array_equal(ya["boxes"], yb["boxes"])


def test_other_epoch_gives_other_order_and_augmentation(scenes):
    orders = [epoch_order(len(scenes), 3, e, True) for e in range(3)]
    assert all(sorted(o) == list(range(len(scenes))) for o in orders)
    assert len({tuple(o) for o in orders}) == 3
    # unshuffled, so image k is sample k in both epochs: augmentation alone differs
    e0 = np.concatenate([x for x, _ in batches(build(scenes, True, 3, 0, shuffle=False))])
    e1 = np.concatenate([x for x, _ in batches(build(scenes, True, 3, 1, shuffle=False))])
    assert all(not np.array_equal(a, b) for a, b in zip(e0, e1, strict=True))
    # and a sample's augmentation does not depend on where the shuffle put it
    shuffled = np.concatenate([x for x, _ in batches(build(scenes, True, 3, 0, shuffle=True))])
    order = epoch_order(len(scenes), 3, 0, True)
    np.testing.assert_array_equal(shuffled, e0[order])


def test_several_epochs_stream_as_the_epochs_one_by_one(scenes):
    """One stream over epochs 1..3 holds each epoch's whole batches in order, cut to
    ``batches_per_epoch``: what training draws from one pipeline for the whole run."""
    stream = batches(build(scenes, True, 3, 1, drop_remainder=True, epochs=3, batches_per_epoch=2))
    one_by_one = [
        b for e in (1, 2, 3) for b in batches(build(scenes, True, 3, e, drop_remainder=True))[:2]
    ]
    assert len(stream) == len(one_by_one) == 6
    for (xa, ya), (xb, yb) in zip(stream, one_by_one, strict=True):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya["grid"], yb["grid"])


def test_plain_targets_decode_to_the_letterboxed_boxes(scenes):
    """Without augmentation the target grid decodes (grid_to_boxes) to each sample's boxes
    moved by its letterbox, classes included, and "boxes" holds the same boxes padded."""
    out = batches(build(scenes, False))
    grids = np.concatenate([y["grid"] for _, y in out])
    padded = np.concatenate([y["boxes"] for _, y in out])
    decoded, p_c, probs = (t.numpy() for t in grid_to_boxes(grids, ANCHORS, SIZE))
    for i, sample in enumerate(scenes.samples):
        expected = Letterbox.fit(sample.width, sample.height, SIZE).apply(sample.boxes)
        found = p_c[i] == 1
        assert found.sum() == len(expected)  # these scenes have no collisions
        got = decoded[i][found]
        got_classes = probs[i][found].argmax(-1)
        key = np.lexsort(got.T[::-1])
        exp_key = np.lexsort(expected.T[::-1])
        np.testing.assert_allclose(got[key], expected[exp_key], atol=1e-3)
        np.testing.assert_array_equal(got_classes[key], sample.classes[exp_key])
        np.testing.assert_allclose(padded[i], pad_boxes(expected, 100), atol=1e-4)


def test_augmented_targets_agree_with_the_image(scenes):
    """Augmented batches: the grid decodes to the "boxes" entries, and each box holds pixels
    of its class colour (PCA and HSV off so colours stay recognisable)."""
    params = Augmentation(hue=0.0, saturation=0.0, value=0.0, pca=None)
    for seed in range(3):
        for images, targets in batches(build(scenes, True, seed=seed, params=params)):
            decoded, p_c, probs = (t.numpy() for t in grid_to_boxes(targets["grid"], ANCHORS, SIZE))
            for image, boxes, pc, pr, padded in zip(
                images, decoded, p_c, probs, targets["boxes"], strict=True
            ):
                got = boxes[pc == 1]
                real = padded[(padded[:, 2] > padded[:, 0]) & (padded[:, 3] > padded[:, 1])]
                assert len(got) == len(real)
                key, real_key = np.lexsort(got.T[::-1]), np.lexsort(real.T[::-1])
                np.testing.assert_allclose(got[key], real[real_key], atol=1e-3)
                for (x1, y1, x2, y2), c in zip(got, pr[pc == 1].argmax(-1), strict=True):
                    inside = image[int(y1) : int(np.ceil(y2)), int(x1) : int(np.ceil(x2))]
                    close = (np.abs(inside - COLOURS[c]) <= 40).all(-1)
                    assert close.any(), "a box without its object"


def test_unreadable_image_is_skipped_with_one_warning(tmp_path, caplog):
    dataset = make_scenes(tmp_path, 5, seed=1)
    broken = dataset.samples[2].image
    broken.write_bytes(b"not an image at all")
    with caplog.at_level(logging.WARNING, logger="yolo_cli.data.pipeline"):
        out = batches(build(dataset, True))
        out_plain = batches(build(dataset, False))
    assert sum(len(x) for x, _ in out) == 4 and sum(len(x) for x, _ in out_plain) == 4
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and str(broken) in warnings[0]


def test_collision_count_counts_boxes_encoding_drops(tmp_path):
    """Three boxes centred in one cell with two anchors: one is dropped; elsewhere none."""
    path = tmp_path / "crowd.png"
    cv2.imwrite(str(path), np.full((SIZE, SIZE, 3), 90, np.uint8))
    crowd = np.array([[2, 2, 20, 20], [4, 4, 18, 30], [6, 6, 26, 16]], np.float32)
    apart = np.array([[2, 2, 20, 20], [70, 70, 100, 110]], np.float32)
    samples = [
        Sample(path, crowd, np.zeros(3, np.int32), SIZE, SIZE),
        Sample(path, apart, np.zeros(2, np.int32), SIZE, SIZE),
        Sample(path, np.zeros((0, 4), np.float32), np.zeros(0, np.int32), SIZE, SIZE),
    ]
    dataset = Dataset(["x"], samples, "synth", tmp_path)
    assert collision_count(dataset, ANCHORS[:2], SIZE, 1) == (1, 5)
    assert collision_count(dataset, ANCHORS, SIZE, 1) == (0, 5)
    # and the pipeline's grid holds the same number of objects
    ((_, targets),) = batches(make_dataset(dataset, ANCHORS[:2], SIZE, 1, 3, False, 0))
    assert targets["grid"][..., 0].sum(axis=(1, 2, 3)).tolist() == [2, 2, 0]


def test_pipeline_runs_inside_a_training_like_loop(scenes):
    """The batches feed a tf.function (what the training step is) without retracing per batch."""
    traces = []

    @tf.function
    def step(images, targets):
        traces.append(1)
        return tf.reduce_sum(images) + tf.reduce_sum(targets["grid"])

    for images, targets in build(scenes, True, drop_remainder=True):
        step(images, targets)
    assert len(traces) == 1


BCCD = datasets_root() / "bccd"


@pytest.mark.skipif(not BCCD.is_dir(), reason="BCCD not found under datasets_root()")
def test_bccd_targets_hold_every_box_but_the_collisions():
    """Real data: per image, the grid holds each letterboxed box except those collision_count
    reports; augmented batches of the same images come out too."""
    full = load_dataset(BCCD, split="train")
    dataset = Dataset(full.names, full.samples[:8], full.format, full.root, "train")
    anchors = np.array([[60, 60]], np.float32)  # one anchor a cell: crowded cells overflow
    ds = make_dataset(dataset, anchors, 416, 3, 4, False, 0)
    grids = np.concatenate([y["grid"].numpy() for _, y in ds])
    all_dropped = 0
    for sample, grid in zip(dataset.samples, grids, strict=True):
        one = Dataset(dataset.names, [sample], "voc", dataset.root)
        dropped, total = collision_count(one, anchors, 416, 3)
        assert grid[..., 0].sum() == total - dropped
        all_dropped += dropped
    assert all_dropped > 0
    augmented = batches(make_dataset(dataset, anchors, 416, 3, 4, True, 0))
    assert sum(len(x) for x, _ in augmented) == 8
    assert all(y["grid"][..., 0].sum() > 0 for _, y in augmented)
