"""The tf.data pipeline on small rendered datasets written to disk: shapes for one and two
heads, determinism (mosaics included), the course's one-grid targets exactly, targets that
decode back to the boxes, mosaic switched off from an epoch on, unreadable images skipped."""

from __future__ import annotations

import logging

import cv2
import numpy as np
import pytest
import tensorflow as tf
from shared_data import BCCD, needs_bccd

from yolo_cli.boxes import Letterbox
from yolo_cli.data.augment import NO_COLOUR, Augmentation, prepare
from yolo_cli.data.dataset import Dataset, Sample
from yolo_cli.data.image import read_image
from yolo_cli.data.load import load_dataset
from yolo_cli.data.pipeline import (
    ImageCache,
    collision_count,
    epoch_order,
    make_dataset,
    sample_rng,
    training_example,
)
from yolo_cli.modelfile import Head
from yolo_cli.postprocess import grid_to_boxes
from yolo_cli.targets import assign_targets, encode_targets, pad_boxes

SIZE = 128  # S = 4 at stride 32, 8 at stride 16
GRID = SIZE // 32
NUM_CLASSES = 3
ANCHORS = np.array([[16, 16], [40, 30], [30, 60]], np.float32)
ONE_HEAD = [Head(32, ANCHORS.tolist())]
TWO_HEADS = [Head(32, [[40, 30], [30, 60]], 2.0), Head(16, [[10, 12], [16, 16], [24, 20]], 2.0)]
COLOURS = [(255, 40, 40), (40, 255, 40), (40, 40, 255)]


def write_scene(path, rng, width, height):
    """Noisy background with up to 5 non-overlapping filled rectangles of class-coloured pixels,
    written as PNG. Returns boxes ``(N, 4)`` xyxy px and classes ``(N,)``."""
    image = rng.integers(60, 191, (height, width, 3), dtype=np.uint8)
    n = int(rng.integers(1, 6))
    boxes = []
    for _ in range(200):
        if len(boxes) == n:
            break
        w, h = rng.integers(12, min(width, height) // 2, 2)
        x, y = int(rng.integers(0, width - w)), int(rng.integers(0, height - h))
        box = [x, y, x + w, y + h]
        if all(box[2] <= o[0] or o[2] <= box[0] or box[3] <= o[1] or o[3] <= box[1]
               for o in boxes):  # fmt: skip
            boxes.append(box)
    classes = rng.integers(0, NUM_CLASSES, len(boxes)).astype(np.int32)
    for (x1, y1, x2, y2), c in zip(boxes, classes, strict=True):
        image[y1:y2, x1:x2] = COLOURS[c]
    cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return np.array(boxes, np.float32), classes


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
    """The batches as numpy: ``(images, {"grids": [per head], "boxes"})``."""
    return [
        (x.numpy(), {"grids": [g.numpy() for g in y["grids"]], "boxes": y["boxes"].numpy()})
        for x, y in ds
    ]


def build(dataset, augment, seed=0, epoch=0, heads=ONE_HEAD, **kw):
    return make_dataset(dataset, heads, SIZE, NUM_CLASSES, 4, augment, seed, epoch, **kw)


def assert_same_batches(a, b):
    assert len(a) == len(b)
    for (xa, ya), (xb, yb) in zip(a, b, strict=True):
        assert xa.tobytes() == xb.tobytes()
        assert len(ya["grids"]) == len(yb["grids"])
        for ga, gb in zip(ya["grids"], yb["grids"], strict=True):
            assert ga.tobytes() == gb.tobytes()
        assert ya["boxes"].tobytes() == yb["boxes"].tobytes()


@pytest.mark.parametrize("heads", [ONE_HEAD, TWO_HEADS], ids=["one head", "two heads"])
def test_shapes_and_dtypes(scenes, heads):
    out = batches(build(scenes, True, heads=heads, rule="ratio"))
    assert [len(x) for x, _ in out] == [4, 4, 3]
    images, targets = out[0]
    assert images.shape == (4, SIZE, SIZE, 3) and images.dtype == np.float32
    assert 0 <= images.min() and images.max() <= 255 and images.max() > 1
    assert [g.shape for g in targets["grids"]] == [
        (4, SIZE // h.stride, SIZE // h.stride, len(h.anchors), 5 + NUM_CLASSES) for h in heads
    ]
    assert all(g.dtype == np.float32 for g in targets["grids"])
    assert targets["boxes"].shape == (4, 100, 4) and targets["boxes"].dtype == np.float32
    spec = build(scenes, False, heads=heads).element_spec
    assert spec[0].shape.as_list() == [None, SIZE, SIZE, 3]
    assert isinstance(spec[1]["grids"], tuple) and len(spec[1]["grids"]) == len(heads)
    assert [len(x) for x, _ in batches(build(scenes, False, drop_remainder=True))] == [4, 4]


def test_same_seed_and_epoch_give_identical_batches(scenes):
    for augment in (True, False):
        a = batches(build(scenes, augment, seed=3, epoch=2, heads=TWO_HEADS, rule="ratio"))
        b = batches(build(scenes, augment, seed=3, epoch=2, heads=TWO_HEADS, rule="ratio"))
        assert_same_batches(a, b)


def test_the_course_one_grid_case_gives_exactly_the_encode_targets_batches(scenes):
    """One head, rule ``best``: each image is the sample's letterbox (plain) or its own
    generator's augmentation, and its grid is :func:`encode_targets` of that image's boxes."""
    plain = np.concatenate([y["grids"][0] for _, y in batches(build(scenes, False))])
    images = np.concatenate([x for x, _ in batches(build(scenes, False))])
    for i, s in enumerate(scenes.samples):
        image, boxes, classes = prepare(read_image(s.image), s.boxes, s.classes, SIZE)
        np.testing.assert_array_equal(images[i], image)
        grid, _ = encode_targets(boxes, classes, ANCHORS, SIZE, GRID, NUM_CLASSES)
        np.testing.assert_array_equal(plain[i], grid)
    params = Augmentation(pca=None)
    out = batches(build(scenes, True, seed=5, epoch=1, params=params, shuffle=False))
    images = np.concatenate([x for x, _ in out])
    grids = np.concatenate([y["grids"][0] for _, y in out])
    padded = np.concatenate([y["boxes"] for _, y in out])
    for i in range(len(scenes)):
        rng = sample_rng(5, 1, i)
        image, boxes, classes = training_example(scenes.samples, i, rng, SIZE, params)
        np.testing.assert_array_equal(images[i], image)
        grid, _ = encode_targets(boxes, classes, ANCHORS, SIZE, GRID, NUM_CLASSES)
        np.testing.assert_array_equal(grids[i], grid)
        np.testing.assert_array_equal(padded[i], pad_boxes(boxes, 100))


def test_the_image_cache_changes_nothing_but_the_reads(scenes):
    """Batches are the same with every image kept, some, or none; the cache holds what fits."""
    runs = [batches(build(scenes, True, 6, cache_bytes=b, epochs=2)) for b in (0, 200_000, None)]
    assert_same_batches(runs[0], runs[1])
    assert_same_batches(runs[0], runs[2])
    cache = ImageCache(200_000)
    images = [cache.read(s.image) for s in scenes.samples]
    assert 0 < cache.bytes <= 200_000 and cache.bytes < sum(im.nbytes for im in images)
    for s, image in zip(scenes.samples, images, strict=True):
        again = cache.read(s.image)
        np.testing.assert_array_equal(again, read_image(s.image))
        assert (again is image) == (not image.flags.writeable)


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
    assert len(stream) == 6
    assert_same_batches(stream, one_by_one)


def test_mosaic_stops_at_mosaic_until_epoch(scenes):
    """Epochs 0..3 in one stream with ``mosaic_until_epoch=2``: epochs 0 and 1 are the
    mosaic epochs, 2 and 3 those of the same augmentation without mosaic."""
    params = Augmentation(pca=None, mosaic_p=1.0)
    whole = dict(drop_remainder=True)
    stream = batches(
        build(scenes, True, 4, 0, params=params, epochs=4, mosaic_until_epoch=2, **whole)
    )
    without = Augmentation(pca=None, mosaic_p=0.0)
    expected = [
        b
        for e in range(4)
        for b in batches(build(scenes, True, 4, e, params=params if e < 2 else without, **whole))
    ]
    assert_same_batches(stream, expected)
    # and the mosaic epochs really differ from those without
    plain = batches(build(scenes, True, 4, 0, params=without))
    assert not np.array_equal(stream[0][0], plain[0][0])


def test_mosaic_images_hold_four_samples(scenes):
    """With mosaic_p = 1 an image holds objects of several samples: more boxes per image
    on average than the samples have."""
    params = Augmentation(**NO_COLOUR, mosaic_p=1.0, scale=(1.0, 1.0), min_visible=0.0)
    out = batches(build(scenes, True, 2, params=params))
    padded = np.concatenate([y["boxes"] for _, y in out])
    per_image = (padded[..., 2] > padded[..., 0]).sum(1)
    assert per_image.mean() > 1.5 * scenes.num_objects() / len(scenes)


def plain_targets_decode(grids, heads, samples):
    """Each head's grid decodes (grid_to_boxes) to letterboxed boxes of its sample, and every
    box of a sample is found in some head (no collisions in these scenes)."""
    for i, sample in enumerate(samples):
        expected = Letterbox.fit(sample.width, sample.height, SIZE).apply(sample.boxes)
        found = []
        for grid, head in zip(grids, heads, strict=True):
            decoded, p_c, probs = (
                t.numpy() for t in grid_to_boxes(grid[i : i + 1], np.array(head.anchors), SIZE)
            )
            for box, cls in zip(decoded[0][p_c[0] == 1], probs[0][p_c[0] == 1].argmax(-1)):
                match = np.abs(expected - box).max(axis=1) < 1e-3
                assert match.any(), f"a slot holds a box of no object: {box}"
                assert sample.classes[match.argmax()] == cls
                found.append(match.argmax())
        assert sorted(set(found)) == list(range(len(expected)))


def test_plain_targets_decode_to_the_letterboxed_boxes(scenes):
    """Without augmentation each grid decodes to the sample's letterboxed boxes, classes
    included (one head: exactly one slot each), and "boxes" holds the same boxes padded."""
    out = batches(build(scenes, False))
    grids = [np.concatenate([y["grids"][0] for _, y in out])]
    assert (grids[0][..., 0].sum(axis=(1, 2, 3)) == [len(s.boxes) for s in scenes.samples]).all()
    plain_targets_decode(grids, ONE_HEAD, scenes.samples)
    padded = np.concatenate([y["boxes"] for _, y in out])
    for i, sample in enumerate(scenes.samples):
        expected = Letterbox.fit(sample.width, sample.height, SIZE).apply(sample.boxes)
        np.testing.assert_allclose(padded[i], pad_boxes(expected, 100), atol=1e-4)
    out = batches(build(scenes, False, heads=TWO_HEADS, rule="ratio"))
    grids = [np.concatenate([y["grids"][h] for _, y in out]) for h in range(2)]
    plain_targets_decode(grids, TWO_HEADS, scenes.samples)


def test_augmented_targets_agree_with_the_image(scenes):
    """Augmented batches (mosaics and single images, two heads, rule ratio): every slot holds
    one of the "boxes" entries, each of those is in some slot, and each box holds pixels of its
    class colour (PCA and HSV off so colours stay recognisable)."""
    params = Augmentation(**NO_COLOUR, mosaic_p=0.5)
    for seed in range(3):
        out = batches(build(scenes, True, seed=seed, params=params, heads=TWO_HEADS, rule="ratio"))
        for images, targets in out:
            for i, image in enumerate(images):
                padded = targets["boxes"][i]
                real = padded[(padded[:, 2] > padded[:, 0]) & (padded[:, 3] > padded[:, 1])]
                found = set()
                for grid, head in zip(targets["grids"], TWO_HEADS, strict=True):
                    anchors = np.array(head.anchors)
                    decoded, p_c, probs = (
                        t.numpy() for t in grid_to_boxes(grid[i : i + 1], anchors, SIZE)
                    )
                    for box, c in zip(decoded[0][p_c[0] == 1], probs[0][p_c[0] == 1].argmax(-1)):
                        match = np.abs(real - box).max(axis=1) < 1e-3
                        assert match.any()
                        found.add(int(match.argmax()))
                        x1, y1, x2, y2 = box
                        inside = image[int(y1) : int(np.ceil(y2)), int(x1) : int(np.ceil(x2))]
                        close = (np.abs(inside - COLOURS[c]) <= 40).all(-1)
                        assert close.any(), "a box without its object"
                # all but the boxes assignment drops (placement does not depend on class)
                no_class = np.zeros(len(real), np.int32)
                dropped = assign_targets(real, no_class, TWO_HEADS, SIZE, 3, "ratio")[1]
                assert len(found) == len(real) - dropped


def test_unreadable_image_is_skipped_with_one_warning(tmp_path, caplog):
    """The broken sample is skipped (it may also be drawn into others' mosaics: another is
    drawn instead), with one warning for the file in all."""
    dataset = make_scenes(tmp_path, 5, seed=1)
    broken = dataset.samples[2].image
    broken.write_bytes(b"not an image at all")
    with caplog.at_level(logging.WARNING, logger="yolo_cli.data.pipeline"):
        out = batches(build(dataset, True, epochs=3))
        out_plain = batches(build(dataset, False))
    assert sum(len(x) for x, _ in out) == 12 and sum(len(x) for x, _ in out_plain) == 4
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and str(broken) in warnings[0]


def test_collision_count_counts_boxes_assignment_drops(tmp_path):
    """Three boxes centred in one cell with two anchors: one is dropped; elsewhere none. Per
    heads and rule, and the pipeline's grids hold the same number of objects."""
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
    two_anchors = [Head(32, ANCHORS[:2].tolist())]
    assert collision_count(dataset, two_anchors, SIZE, 1) == (1, 5)
    assert collision_count(dataset, ONE_HEAD, SIZE, 1) == (0, 5)
    ((_, targets),) = batches(make_dataset(dataset, two_anchors, SIZE, 1, 3, False, 0))
    assert targets["grids"][0][..., 0].sum(axis=(1, 2, 3)).tolist() == [2, 2, 0]
    # one anchor a head, one head: the crowd keeps one box of three under either rule
    lonely = [Head(32, [[16, 16]])]
    assert collision_count(dataset, lonely, SIZE, 1, "best") == (2, 5)
    # rule ratio also fills the neighbour cells, so the crowd's boxes find room
    dropped, total = collision_count(dataset, lonely, SIZE, 1, "ratio")
    expected = sum(assign_targets(s.boxes, s.classes, lonely, SIZE, 1, "ratio")[1] for s in samples)
    assert (dropped, total) == (expected, 5) and dropped < 2


def test_pipeline_runs_inside_a_training_like_loop(scenes):
    """The batches feed a tf.function (what the training step is) without retracing per batch."""
    traces = []

    @tf.function
    def step(images, targets):
        traces.append(1)
        return tf.reduce_sum(images) + sum(tf.reduce_sum(g) for g in targets["grids"])

    for images, targets in build(scenes, True, drop_remainder=True, heads=TWO_HEADS):
        step(images, targets)
    assert len(traces) == 1


@needs_bccd
def test_bccd_targets_hold_every_box_but_the_collisions():
    """Real data: per image, the grid holds each letterboxed box except those collision_count
    reports; augmented batches (mosaics) of the same images come out too."""
    full = load_dataset(BCCD, split="train")
    dataset = Dataset(full.names, full.samples[:8], full.format, full.root, "train")
    heads = [Head(32, [[60, 60]])]  # one anchor a cell: crowded cells overflow
    ds = make_dataset(dataset, heads, 416, 3, 4, False, 0)
    grids = np.concatenate([y["grids"][0].numpy() for _, y in ds])
    all_dropped = 0
    for sample, grid in zip(dataset.samples, grids, strict=True):
        one = Dataset(dataset.names, [sample], "voc", dataset.root)
        dropped, total = collision_count(one, heads, 416, 3)
        assert grid[..., 0].sum() == total - dropped
        all_dropped += dropped
    assert all_dropped > 0
    augmented = batches(make_dataset(dataset, heads, 416, 3, 4, True, 0))
    assert sum(len(x) for x, _ in augmented) == 8
    assert all(y["grids"][0][..., 0].sum() > 0 for _, y in augmented)
