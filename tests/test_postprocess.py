"""yolo_cli.postprocess: decode, the score threshold and per-class NMS, in numpy and TensorFlow.

Oracles: tf.image.non_max_suppression, and the course's loop written out below with Python
loops. The TF combined-NMS path (`select`) and the numpy path (`filter_detections`) must agree.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st

from yolo_cli.modelfile import Head
from yolo_cli.postprocess import (
    Detections,
    batched_nms,
    decode,
    filter_detections,
    nms,
    select,
    vote,
)


def clustered_boxes(rng: np.random.Generator, n: int, size: float = 640.0) -> np.ndarray:
    """``(n, 4)`` float32 xyxy boxes jittered around ~n/8 objects, so that many overlap."""
    objects = max(1, n // 8)
    centre = rng.uniform(0, size, (objects, 2))
    wh = rng.uniform(10, size / 4, (objects, 2))
    owner = rng.integers(0, objects, n)
    c = centre[owner] + rng.normal(0, 0.2, (n, 2)) * wh[owner]
    s = wh[owner] * np.exp(rng.normal(0, 0.2, (n, 2)))
    return np.concatenate([c - s / 2, c + s / 2], axis=1).astype(np.float32)


def distinct_scores(rng: np.random.Generator, n: int) -> np.ndarray:
    """``(n,)`` float32 scores in (0, 1), no two equal."""
    return ((rng.permutation(n) + rng.uniform(0.1, 0.9, n)) / n).astype(np.float32)


def course_nms(boxes, scores, iou_threshold) -> list[int]:
    """The course's steps, literally: pick the largest score, output it, discard the remaining
    boxes whose IoU with it is over the threshold, repeat. Equal scores: lower index first."""

    def pair_iou(a, b):
        # float32 throughout, like the implementation, so that near-threshold pairs agree
        ax1, ay1, ax2, ay2 = (np.float32(v) for v in a)
        bx1, by1, bx2, by2 = (np.float32(v) for v in b)
        w = max(min(ax2, bx2) - max(ax1, bx1), np.float32(0))
        h = max(min(ay2, by2) - max(ay1, by1), np.float32(0))
        inter = w * h
        union = max(ax2 - ax1, np.float32(0)) * max(ay2 - ay1, np.float32(0))
        union = union + max(bx2 - bx1, np.float32(0)) * max(by2 - by1, np.float32(0)) - inter
        return inter / union if union > 0 else np.float32(0)

    remaining = list(range(len(scores)))
    output = []
    while remaining:
        best = remaining[0]
        for i in remaining:
            if scores[i] > scores[best]:
                best = i
        output.append(best)
        remaining.remove(best)
        remaining = [
            i for i in remaining if not pair_iou(boxes[best], boxes[i]) > np.float32(iou_threshold)
        ]
    return output


# --- nms ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("iou_threshold", [0.0, 0.1, 0.3, 0.45, 0.5, 0.6, 0.8, 1.0])
def test_nms_keeps_what_tf_image_non_max_suppression_keeps(iou_threshold):
    rng = np.random.default_rng(round(iou_threshold * 100))
    for _ in range(40):
        n = int(rng.integers(1, 301))
        boxes, scores = clustered_boxes(rng, n), distinct_scores(rng, n)
        # TF reads [y1, x1, y2, x2]; IoU does not care which axis comes first
        expected = tf.image.non_max_suppression(boxes, scores, n, iou_threshold).numpy()
        np.testing.assert_array_equal(nms(boxes, scores, iou_threshold), expected)


def test_nms_suppresses_only_over_the_threshold():
    # [0,0,2,1] and [0,0,1,1]: intersection 1, union 2 + 1 − 1 = 2 → IoU exactly 0.5
    boxes = np.array([[0, 0, 2, 1], [0, 0, 1, 1], [5, 5, 6, 6]], np.float32)
    scores = np.array([0.9, 0.8, 0.7], np.float32)
    np.testing.assert_array_equal(nms(boxes, scores, 0.5), [0, 1, 2])  # 0.5 is not over 0.5
    np.testing.assert_array_equal(nms(boxes, scores, 0.49), [0, 2])
    # at threshold 0 any overlap suppresses, disjoint boxes (IoU 0) stay
    np.testing.assert_array_equal(nms(boxes, scores, 0.0), [0, 2])


def test_nms_matches_the_course_loop_on_random_sets():
    rng = np.random.default_rng(7)
    for trial in range(30):
        n = int(rng.integers(1, 200))
        boxes, scores = clustered_boxes(rng, n), distinct_scores(rng, n)
        threshold = float(rng.uniform(0, 1))
        got = nms(boxes, scores, threshold)
        assert list(got) == course_nms(boxes, scores, threshold), f"trial {trial}"


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 20),
            st.integers(0, 20),
            st.integers(1, 8),
            st.integers(1, 8),
            st.integers(0, 4),  # few score values: ties happen
        ),
        max_size=25,
    ),
    st.sampled_from([0.0, 0.25, 0.5, 0.7]),
)
def test_nms_matches_the_course_loop_on_small_integer_sets(rows, iou_threshold):
    # integer boxes give exact IoUs such as 0.5, and equal scores test the tie rule
    boxes = np.array([[x, y, x + w, y + h] for x, y, w, h, _ in rows], np.float32).reshape(-1, 4)
    scores = np.array([s for *_, s in rows], np.float32)
    got = nms(boxes, scores, iou_threshold)
    assert list(got) == course_nms(boxes, scores, iou_threshold)


def test_nms_on_nothing():
    keep = nms(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), 0.5)
    assert keep.shape == (0,) and keep.dtype.kind == "i"
    keep = batched_nms(np.zeros((0, 4)), np.zeros(0), np.zeros(0, np.int32), 0.5)
    assert keep.shape == (0,) and keep.dtype.kind == "i"


# --- batched_nms --------------------------------------------------------------------------------


def test_batched_nms_never_suppresses_across_classes():
    box = [10, 10, 50, 50]
    boxes = np.array([box, box, box, box], np.float32)
    scores = np.array([0.6, 0.9, 0.7, 0.8], np.float32)
    classes = np.array([0, 1, 2, 3])
    np.testing.assert_array_equal(batched_nms(boxes, scores, classes, 0.5), [1, 3, 2, 0])
    # the same boxes in one class: only the best survives
    np.testing.assert_array_equal(batched_nms(boxes, scores, np.zeros(4, int), 0.5), [1])


def test_batched_nms_is_nms_per_class_merged_by_score():
    rng = np.random.default_rng(11)
    for _ in range(60):
        n = int(rng.integers(1, 300))
        num_classes = int(rng.integers(1, 6))
        boxes, scores = clustered_boxes(rng, n), distinct_scores(rng, n)
        classes = rng.integers(0, num_classes, n)
        threshold = float(rng.choice([0.3, 0.5, 0.7]))
        expected = []
        for c in range(num_classes):
            members = np.flatnonzero(classes == c)
            expected.extend(members[nms(boxes[members], scores[members], threshold)])
        expected.sort(key=lambda i: -scores[i])
        np.testing.assert_array_equal(batched_nms(boxes, scores, classes, threshold), expected)


# --- decode -------------------------------------------------------------------------------------


def test_decode_hand_built_cell():
    # 416 px input, S = 13 → cells of 32 px. One object in cell (row 4, col 7), anchor 2:
    #   t_x = t_y = 0 → sigmoid 0.5 → centre x = (7 + 0.5) · 32 = 240, y = (4 + 0.5) · 32 = 144
    #   t_w = log 2, t_h = log 3 on anchor (40, 60) → w = 80, h = 180
    #   box = [240 − 40, 144 − 90, 240 + 40, 144 + 90] = [200, 54, 280, 234]
    #   t_c = 2 → p_c = sigmoid(2); class logits (0, log 6, log 3) → softmax (0.1, 0.6, 0.3)
    s, b, c = 13, 5, 3
    anchors = np.array([[10, 10], [20, 30], [40, 60], [100, 80], [200, 200]], np.float32)
    raw = np.zeros((2, s, s, b, 5 + c), np.float32)
    raw[..., 0] = -10.0
    raw[1, 4, 7, 2] = [2.0, 0.0, 0.0, math.log(2), math.log(3), 0.0, math.log(6), math.log(3)]

    def check(boxes, p_c, probs):
        assert boxes.shape == (2, s * s * b, 4)
        assert p_c.shape == (2, s * s * b) and probs.shape == (2, s * s * b, c)
        i = (4 * s + 7) * b + 2  # flattening order (row, col, anchor)
        np.testing.assert_allclose(boxes[1, i], [200, 54, 280, 234], atol=1e-3)
        assert p_c[1, i] == pytest.approx(1 / (1 + math.exp(-2)), rel=1e-6)
        np.testing.assert_allclose(probs[1, i], [0.1, 0.6, 0.3], rtol=1e-5)
        assert np.argmax(p_c[1]) == i and p_c[1, i] > 0.6
        assert (p_c < 1e-4).sum() == 2 * s * s * b - 1  # every other cell is empty
        # an all-zero cell: centre of the cell, exactly the anchor's size
        j = (0 * s + 12) * b + 4  # row 0, col 12, anchor (200, 200): centre (400, 16)
        np.testing.assert_allclose(boxes[0, j], [300, -84, 500, 116], atol=1e-3)

    check(*(t.numpy() for t in decode(raw, [Head(32, anchors)], 416)))
    in_graph = tf.function(lambda r: decode(r, [Head(32, anchors)], 416))
    check(*(t.numpy() for t in in_graph(tf.constant(raw))))


def test_decode_of_an_empty_batch():
    boxes, p_c, probs = decode(
        np.zeros((0, 13, 13, 5, 8), np.float32), [Head(32, np.ones((5, 2)))], 416
    )
    assert boxes.shape == (0, 845, 4) and p_c.shape == (0, 845) and probs.shape == (0, 845, 3)


# --- select (TF) and filter_detections (numpy) ----------------------------------------------------

SIGNATURE = [
    tf.TensorSpec([None, None, 4], tf.float32),
    tf.TensorSpec([None, None], tf.float32),
    tf.TensorSpec([None, None, None], tf.float32),
]


def compiled_select(conf, iou, max_det, box_vote=False):
    return tf.function(
        lambda boxes, p_c, probs: select(boxes, p_c, probs, conf, iou, max_det, box_vote),
        input_signature=SIGNATURE,
    )


def random_decoded_grids(seed: int, batch: int = 4, num_classes: int = 3):
    rng = np.random.default_rng(seed)
    raw = rng.normal(0, 2, (batch, 13, 13, 5, 5 + num_classes)).astype(np.float32)
    raw[..., 3:5] = rng.normal(0, 0.5, raw[..., 3:5].shape)  # box sizes near the anchors
    anchors = rng.uniform(20, 200, (5, 2)).astype(np.float32)
    return [t.numpy() for t in decode(raw, [Head(32, anchors)], 416)]


def assert_same_detections(padded, index, dets: Detections):
    boxes, scores, classes, count = (t.numpy() for t in padded)
    n = int(count[index])
    assert n == len(dets)
    np.testing.assert_array_equal(classes[index, :n], dets.classes)
    np.testing.assert_allclose(scores[index, :n], dets.scores, rtol=1e-6)
    np.testing.assert_allclose(boxes[index, :n], dets.boxes, atol=1e-4)
    assert not scores[index, n:].any() and not boxes[index, n:].any()


@pytest.mark.parametrize(
    ("seed", "conf", "iou", "max_det"),
    [(0, 0.6, 0.5, 100), (1, 0.6, 0.5, 1000), (2, 0.3, 0.7, 1000), (3, 0.9, 0.3, 20)],
)
def test_select_gives_the_same_detections_as_filter_detections(seed, conf, iou, max_det):
    boxes, p_c, probs = random_decoded_grids(seed)
    padded = compiled_select(conf, iou, max_det)(boxes, p_c, probs)
    for i in range(len(boxes)):
        dets = filter_detections(boxes[i], p_c[i], probs[i], conf, iou, max_det)
        assert 0 < len(dets) <= max_det
        assert np.all(np.diff(dets.scores) <= 0)
        assert_same_detections(padded, i, dets)


def test_score_threshold_is_strict():
    # "discard boxes with score ≤ 0.6" (score = p_c · P(class); P = 1 here, so score = p_c):
    # a score equal to the threshold goes, one ulp above stays
    threshold = 0.6
    p_c = np.array([0.6, np.nextafter(np.float32(0.6), np.float32(1)), 0.59, 0.99], np.float32)
    boxes = np.array(
        [[0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10], [60, 0, 70, 10]], np.float32
    )
    probs = np.tile(np.array([[0.0, 1.0]], np.float32), (4, 1))

    dets = filter_detections(boxes, p_c, probs, threshold, 0.5, 100)
    np.testing.assert_array_equal(dets.boxes, boxes[[3, 1]])
    np.testing.assert_array_equal(dets.classes, [1, 1])
    np.testing.assert_allclose(dets.scores, p_c[[3, 1]])
    padded = compiled_select(threshold, 0.5, 10)(boxes[None], p_c[None], probs[None])
    assert_same_detections(padded, 0, dets)


def test_threshold_applies_to_the_class_score_not_p_c():
    # p_c 0.9 with P(class) 0.5 scores 0.45: below 0.6 although p_c is above it
    boxes = np.array([[0, 0, 10, 10], [20, 0, 30, 10]], np.float32)
    p_c = np.array([0.9, 0.9], np.float32)
    probs = np.array([[0.5, 0.5], [0.1, 0.9]], np.float32)
    dets = filter_detections(boxes, p_c, probs, 0.6, 0.5, 100)
    np.testing.assert_array_equal(dets.boxes, boxes[[1]])
    np.testing.assert_allclose(dets.scores, [0.81], rtol=1e-6)
    padded = compiled_select(0.6, 0.5, 10)(boxes[None], p_c[None], probs[None])
    assert_same_detections(padded, 0, dets)


def test_empty_inputs_give_empty_outputs():
    # nothing above the threshold
    boxes, p_c, probs = random_decoded_grids(5, batch=3)
    low = np.minimum(p_c, 0.5)
    for i in range(3):
        dets = filter_detections(boxes[i], low[i], probs[i], 0.6, 0.5, 100)
        assert len(dets) == 0 and dets.boxes.shape == (0, 4) and dets.classes.shape == (0,)
    out = [t.numpy() for t in compiled_select(0.6, 0.5, 100)(boxes, low, probs)]
    np.testing.assert_array_equal(out[3], [0, 0, 0])
    assert all(np.isfinite(t).all() and not t.any() for t in out)

    # no boxes at all (N = 0), and a batch of no images
    dets = filter_detections(np.zeros((0, 4)), np.zeros(0), np.zeros((0, 3)), 0.6, 0.5, 100)
    assert len(dets) == 0 and dets.scores.dtype == np.float32
    for batch, n, box_vote in [(2, 0, False), (0, 845, False), (0, 0, False), (2, 0, True),
                               (0, 845, True), (0, 0, True)]:  # fmt: skip
        run = compiled_select(0.6, 0.5, 100, box_vote)
        out = run(np.zeros((batch, n, 4)), np.zeros((batch, n)), np.zeros((batch, n, 3)))
        boxes_out, scores_out, classes_out, count = (t.numpy() for t in out)
        assert boxes_out.shape == (batch, 100, 4) and count.shape == (batch,)
        assert not count.any() and np.isfinite(boxes_out).all()
    assert len(Detections.empty()) == 0


# --- box voting -------------------------------------------------------------------------------


def test_vote_is_the_score_weighted_mean_of_the_overlapping_boxes_of_its_class():
    kept = np.array([[10, 10, 50, 50], [100, 100, 120, 120], [200, 200, 200, 230]], np.float32)
    candidates = np.array(
        [
            [10, 10, 50, 50],  # the first kept box itself, 0.9
            [14, 10, 54, 50],  # IoU 0.82 with it, same class, 0.3: votes
            [10, 10, 50, 50],  # same place, other class: does not
            [30, 30, 70, 70],  # same class, IoU 0.14: does not
            [100, 100, 120, 120],  # the second kept box, alone
            [200, 200, 200, 230],  # the third, no area: nothing overlaps it
        ],
        np.float32,
    )
    scores = np.array([0.9, 0.3, 0.8, 0.5, 0.7, 0.6], np.float32)
    classes = np.array([0, 0, 1, 0, 0, 0])

    voted = vote(kept, [0, 0, 0], candidates, scores, classes, 0.5)
    np.testing.assert_allclose(voted, [[11, 10, 51, 50], kept[1], kept[2]], atol=1e-5)
    # over the NMS threshold only: at IoU 1 nothing else votes, and a kept box stays put
    np.testing.assert_array_equal(vote(kept, [0, 0, 0], candidates, scores, classes, 1.0), kept)
    assert vote(np.zeros((0, 4)), [], candidates, scores, classes, 0.5).shape == (0, 4)


@pytest.mark.parametrize(
    ("seed", "conf", "iou", "max_det"),
    [(0, 0.6, 0.5, 100), (1, 0.3, 0.5, 1000), (2, 0.3, 0.7, 1000), (3, 0.9, 0.3, 20)],
)
def test_select_votes_as_filter_detections_does(seed, conf, iou, max_det):
    boxes, p_c, probs = random_decoded_grids(seed)
    voted = compiled_select(conf, iou, max_det, box_vote=True)(boxes, p_c, probs)
    plain = compiled_select(conf, iou, max_det)(boxes, p_c, probs)
    for i in range(len(boxes)):
        dets = filter_detections(boxes[i], p_c[i], probs[i], conf, iou, max_det, box_vote=True)
        assert_same_detections(voted, i, dets)
    # voting moves boxes; which boxes are kept, their scores and classes stay
    for v, p in zip(voted[1:], plain[1:]):
        np.testing.assert_array_equal(v.numpy(), p.numpy())
    assert np.abs(voted[0].numpy() - plain[0].numpy()).max() > 1.0
