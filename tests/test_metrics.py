"""AP / mAP: hand-worked cases, pycocotools COCOeval as the oracle, and properties."""

from __future__ import annotations

import contextlib
import io
import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from shared_data import BCCD, needs_bccd

from yolo_cli.data.load import load_dataset
from yolo_cli.metrics import COCO_IOU_THRESHOLDS, average_precision, evaluate
from yolo_cli.postprocess import Detections


def dets(boxes, scores, classes) -> Detections:
    return Detections(
        np.asarray(boxes, np.float32).reshape(-1, 4),
        np.asarray(scores, np.float32),
        np.asarray(classes, np.int32),
    )


def gt(boxes, classes):
    return np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(classes, np.int32)


# --- hand-worked cases ----------------------------------------------------------------------

# Two objects; three detections by score: hit, miss (far away), hit.
TWO_OBJECTS = [gt([[0, 0, 10, 10], [20, 20, 30, 30]], [0, 0])]
HIT_MISS_HIT = [
    dets([[0, 0, 10, 10], [50, 50, 60, 60], [20, 20, 30, 30]], [0.9, 0.8, 0.7], [0, 0, 0])
]


def test_voc_all_point_ap_hand_worked():
    # recall 1/2, 1/2, 2/2; precision 1/1, 1/2, 2/3. Envelope: 1 up to recall 1/2, then 2/3.
    # AP = 0.5 · 1 + 0.5 · 2/3 = 5/6.
    result = evaluate(TWO_OBJECTS, HIT_MISS_HIT, 1, method="voc")
    assert result.ap[0, 0] == pytest.approx(5 / 6)
    assert result.map == pytest.approx(5 / 6)


def test_coco_101_point_ap_hand_worked():
    # Same curve. Recall thresholds 0.00 … 0.50 (51 of them) find the first detection
    # (recall 1/2, envelope 1); 0.51 … 1.00 (50) find the third (envelope 2/3).
    # AP = (51 · 1 + 50 · 2/3) / 101.
    result = evaluate(TWO_OBJECTS, HIT_MISS_HIT, 1, method="coco")
    assert result.ap[0, 0] == pytest.approx((51 + 50 * 2 / 3) / 101)


def test_best_f1_operating_point_hand_worked():
    # F1 after each detection: 2·1·½/1.5 = 2/3, 2·½·½/1 = 1/2, 2·⅔·1/(5/3) = 4/5 → the third,
    # at score 0.7, with precision 2/3 and recall 1.
    result = evaluate(TWO_OBJECTS, HIT_MISS_HIT, 1)
    assert result.f1[0] == pytest.approx(0.8)
    assert result.precision[0] == pytest.approx(2 / 3)
    assert result.recall[0] == pytest.approx(1.0)
    assert result.score_threshold[0] == pytest.approx(0.7)
    recall, precision = result.curves[0]
    np.testing.assert_allclose(recall, [0.5, 0.5, 1.0])
    np.testing.assert_allclose(precision, [1.0, 0.5, 2 / 3])


def test_best_f1_never_cuts_between_equal_scores():
    # Scores 0.9 (hit), 0.5 (miss), 0.5 (hit). Cutting after the miss alone (F1 1/2) is not a
    # threshold anyone can set; the cuts are after 0.9 (F1 2/3) and after both 0.5s (F1 4/5).
    result = evaluate(TWO_OBJECTS, [dets(HIT_MISS_HIT[0].boxes, [0.9, 0.5, 0.5], [0, 0, 0])], 1)
    assert result.f1[0] == pytest.approx(0.8)
    assert result.score_threshold[0] == pytest.approx(0.5)


def test_duplicate_detection_is_a_false_positive():
    # One object, found twice: recall 1, 1; precision 1, 1/2 → AP 1 (the envelope at recall 1
    # is 1), but the duplicate is counted: precision at the best F1 is 1 only before it.
    result = evaluate(
        [gt([[0, 0, 10, 10]], [0])],
        [dets([[0, 0, 10, 10], [0, 0, 10, 9]], [0.9, 0.8], [0, 0])],
        1,
        method="voc",
    )
    assert result.ap[0, 0] == pytest.approx(1.0)
    np.testing.assert_allclose(result.curves[0][1], [1.0, 0.5])
    assert result.score_threshold[0] == pytest.approx(0.9)


def test_detection_takes_the_highest_iou_unmatched_ground_truth():
    # gt1 = [0,0,10,10], gt2 = [4,0,14,10] (area 100 each).
    # A = [3,0,13,10]: with gt1 inter 7·10 = 70, union 130 → 0.54; with gt2 inter 90, union 110 → 0.82.
    # B = [6,0,16,10]: with gt1 inter 40, union 160 → 0.25; with gt2 inter 80, union 120 → 0.67.
    # A (higher score) takes gt2, its best; B is left with gt1 at 0.25 < 0.5: a false positive.
    # (Taking the first box over the threshold would have matched both.)
    # recall 1/2, 1/2; precision 1, 1/2 → VOC AP = 1/2.
    result = evaluate(
        [gt([[0, 0, 10, 10], [4, 0, 14, 10]], [0, 0])],
        [dets([[3, 0, 13, 10], [6, 0, 16, 10]], [0.9, 0.8], [0, 0])],
        1,
        method="voc",
    )
    np.testing.assert_allclose(result.curves[0][0], [0.5, 0.5])
    assert result.ap[0, 0] == pytest.approx(0.5)


def test_equal_iou_goes_to_the_later_ground_truth():
    # gt1 = [0,0,10,10], gt2 = [2,0,12,10]. A = [1,0,11,10] overlaps both by 90/110 = 0.82.
    # B = [-3,0,7,10]: with gt1 inter 70, union 130 → 0.54; with gt2 inter 50, union 150 → 0.33.
    # As in pycocotools A takes the later gt2, so B still finds gt1: two hits, AP 1.
    result = evaluate(
        [gt([[0, 0, 10, 10], [2, 0, 12, 10]], [0, 0])],
        [dets([[1, 0, 11, 10], [-3, 0, 7, 10]], [0.9, 0.8], [0, 0])],
        1,
        method="voc",
    )
    assert result.ap[0, 0] == 1.0


def test_iou_threshold_decides_the_match():
    # [0,0,10,6] against [0,0,10,10]: IoU 60/100 = 0.6 — a hit at 0.5 and 0.6, a miss at 0.65.
    result = evaluate(
        [gt([[0, 0, 10, 10]], [0])],
        [dets([[0, 0, 10, 6]], [0.9], [0])],
        1,
        iou_thresholds=(0.5, 0.6, 0.65),
        method="voc",
    )
    np.testing.assert_allclose(result.ap[0], [1.0, 1.0, 0.0])
    assert result.map == pytest.approx(1.0)
    assert result.map_all == pytest.approx(2 / 3)


def test_wrong_class_is_no_match():
    result = evaluate([gt([[0, 0, 10, 10]], [0])], [dets([[0, 0, 10, 10]], [0.9], [1])], 2)
    assert result.ap[0, 0] == 0.0
    assert math.isnan(result.ap[1, 0])


def test_class_without_ground_truth_is_nan_and_left_out_of_the_mean():
    # class 0: one hit → AP 1; class 1: no detections → AP 0; class 2: only false positives and
    # no ground truth → NaN, not part of mAP = (1 + 0) / 2.
    result = evaluate(
        [gt([[0, 0, 10, 10], [20, 20, 30, 30]], [0, 1])],
        [dets([[0, 0, 10, 10], [40, 40, 50, 50]], [0.9, 0.8], [0, 2])],
        3,
        method="voc",
    )
    assert result.ap[0, 0] == 1.0
    assert result.ap[1, 0] == 0.0
    assert math.isnan(result.ap[2, 0])
    assert result.map == pytest.approx(0.5)
    np.testing.assert_array_equal(result.n_gt, [1, 1, 0])
    np.testing.assert_array_equal(result.n_det, [1, 0, 1])
    assert (result.precision[1], result.recall[1], result.f1[1]) == (0.0, 0.0, 0.0)
    assert math.isnan(result.score_threshold[1])


def test_max_det_keeps_the_top_scores_per_image_and_class():
    # The hit scores lowest; with max_det 2 it is cut, leaving two misses: AP 0.
    scene = [gt([[0, 0, 10, 10]], [0])]
    found = [dets([[50, 50, 60, 60], [0, 0, 10, 10], [70, 70, 80, 80]], [0.9, 0.1, 0.8], [0, 0, 0])]
    assert evaluate(scene, found, 1, max_det=3).ap[0, 0] > 0
    cut = evaluate(scene, found, 1, max_det=2)
    assert cut.ap[0, 0] == 0.0
    assert cut.n_det[0] == 2


def test_no_images_and_no_detections():
    empty = evaluate([], [], 2)
    assert np.isnan(empty.ap).all() and math.isnan(empty.map)
    missed = evaluate([gt([[0, 0, 10, 10]], [0])], [Detections.empty()], 1)
    assert missed.ap[0, 0] == 0.0 and missed.n_det[0] == 0


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="method"):
        evaluate(TWO_OBJECTS, HIT_MISS_HIT, 1, method="voc07")
    with pytest.raises(ValueError, match="class ids"):
        evaluate(TWO_OBJECTS, HIT_MISS_HIT, 0)
    with pytest.raises(ValueError, match="ground truth images"):
        evaluate(TWO_OBJECTS, [], 1)


def test_average_precision_of_given_curves():
    # A perfect curve; precision 1/2 throughout up to recall 1; and a curve that dips and recovers
    # (envelope lifts the dip): recall .25 .25 .5 1, precision 1 .5 .67 .8 → envelope 1, .8, .8, .8.
    assert average_precision([0.5, 1.0], [1.0, 1.0], "voc") == pytest.approx(1.0)
    assert average_precision([0.5, 1.0], [1.0, 1.0], "coco") == pytest.approx(1.0)
    assert average_precision([0.5, 1.0], [0.5, 0.5], "voc") == pytest.approx(0.5)
    dip = ([0.25, 0.25, 0.5, 1.0], [1.0, 0.5, 2 / 3, 0.8])
    assert average_precision(*dip, "voc") == pytest.approx(0.25 * 1 + 0.75 * 0.8)
    # 101-point: thresholds 0 … .25 (26) → 1; .26 … 1 (75) → 0.8.
    assert average_precision(*dip, "coco") == pytest.approx((26 + 75 * 0.8) / 101)
    # recall never passes 0.5: the thresholds beyond count 0
    assert average_precision([0.5], [1.0], "coco") == pytest.approx(51 / 101)
    assert average_precision([], [], "voc") == 0.0
    with pytest.raises(ValueError):
        average_precision([1.0], [1.0], "auc")


def test_to_dict_is_strict_json():
    result = evaluate(
        [gt([[0, 0, 10, 10]], [0])],
        [dets([[0, 0, 10, 10]], [0.9], [0])],
        2,
        iou_thresholds=COCO_IOU_THRESHOLDS,
        names=["cat", "dog"],
    )
    data = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert data["mAP@0.5"] == 1.0
    assert data["mAP@[0.5:0.95]"] == 1.0
    assert [c["name"] for c in data["classes"]] == ["cat", "dog"]
    assert data["classes"][0]["AP"]["0.75"] == 1.0
    assert data["classes"][1]["AP"]["0.5"] is None
    assert data["classes"][1]["score_threshold"] is None


# --- pycocotools as the oracle --------------------------------------------------------------


def coco_eval(ground_truth, detections, num_classes):
    """pycocotools' per-class AP at IoU 0.5 and over [.5:.95] (NaN for -1), and stats[0:2]."""
    images = [{"id": i + 1, "width": 1, "height": 1} for i in range(len(ground_truth))]
    annotations = []
    for i, (boxes, classes) in enumerate(ground_truth):
        for box, cls in zip(boxes, classes, strict=True):
            annotations.append(
                {"id": len(annotations) + 1, "image_id": i + 1, "category_id": int(cls) + 1}
                | _xywh(box)
                | {"iscrowd": 0}
            )
    results = [
        {"image_id": i + 1, "category_id": int(cls) + 1, "score": float(score)} | _xywh(box)
        for i, d in enumerate(detections)
        for box, score, cls in zip(d.boxes, d.scores, d.classes, strict=True)
    ]
    cocogt = COCO()
    cocogt.dataset = {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": k + 1, "name": str(k)} for k in range(num_classes)],
    }
    with contextlib.redirect_stdout(io.StringIO()):
        cocogt.createIndex()
        cocoeval = COCOeval(cocogt, cocogt.loadRes(results), "bbox")
        cocoeval.evaluate()
        cocoeval.accumulate()
        cocoeval.summarize()
    precision = cocoeval.eval["precision"][:, :, :, 0, 2]  # (T, R, K), area all, maxDets 100
    absent = (precision == -1).all(axis=(0, 1))
    ap50 = np.where(absent, np.nan, precision[0].mean(axis=0))
    ap_all = np.where(absent, np.nan, precision.mean(axis=(0, 1)))
    return ap50, ap_all, cocoeval.stats[:2]


def _xywh(box) -> dict:
    # double differences of float32 corners are exact, so pycocotools' x + w gives x2 back
    x1, y1, x2, y2 = (float(v) for v in box)
    return {"bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1)}


def assert_agrees_with_pycocotools(ground_truth, detections, num_classes):
    ap50, ap_all, stats = coco_eval(ground_truth, detections, num_classes)
    ours = evaluate(ground_truth, detections, num_classes, COCO_IOU_THRESHOLDS, "coco", 100)
    np.testing.assert_allclose(ours.ap[:, 0], ap50, atol=1e-3)
    np.testing.assert_allclose(ours.ap.mean(axis=1), ap_all, atol=1e-3)
    if np.isfinite(ap50).any():
        assert ours.map == pytest.approx(stats[1], abs=1e-3)
        assert ours.map_all == pytest.approx(stats[0], abs=1e-3)
    return ours


def noisy_detections(ground_truth, sizes, num_classes, rng) -> list[Detections]:
    """A plausible detector: jittered true boxes (some dropped, some duplicated, a few with the
    wrong class) plus random false positives, scored so that true boxes tend to score higher."""
    out = []
    for (boxes, classes), (width, height) in zip(ground_truth, sizes, strict=True):
        kept = rng.random(len(boxes)) < 0.85
        b, c = boxes[kept], classes[kept].copy()
        wh = np.tile(b[:, 2:] - b[:, :2], 2)
        b = b + rng.normal(0, 0.08, b.shape) * wh
        dup = rng.random(len(b)) < 0.2
        b = np.concatenate([b, b[dup] + rng.normal(0, 0.1, (dup.sum(), 4)) * wh[dup]])
        c = np.concatenate([c, c[dup]])
        wrong = rng.random(len(c)) < 0.05
        c[wrong] = rng.integers(0, num_classes, wrong.sum())
        n_false = rng.poisson(3)
        corner = rng.uniform(0, [width, height], (n_false, 2))
        b = np.concatenate(
            [b, np.concatenate([corner, corner + rng.uniform(10, 150, (n_false, 2))], 1)]
        )
        c = np.concatenate([c, rng.integers(0, num_classes, n_false)])
        scores = np.concatenate([rng.beta(5, 2, len(b) - n_false), rng.beta(2, 5, n_false)]).astype(
            np.float32
        )
        b = np.concatenate([np.minimum(b[:, :2], b[:, 2:]), np.maximum(b[:, :2], b[:, 2:])], 1)
        order = rng.permutation(len(b))
        out.append(dets(b[order], scores[order], c[order]))
    return out


@needs_bccd
def test_coco_mode_agrees_with_pycocotools_on_bccd():
    dataset = load_dataset(BCCD / "BCCD", split="test")
    assert len(dataset) == 72
    ground_truth = [(s.boxes, s.classes) for s in dataset.samples]
    sizes = [(s.width, s.height) for s in dataset.samples]
    n = len(dataset.names)
    detections = noisy_detections(ground_truth, sizes, n, np.random.default_rng(0))
    ours = assert_agrees_with_pycocotools(ground_truth, detections, n)
    # a realistic, not a degenerate, operating range
    assert 0.3 < ours.map_all < ours.map < 0.95


def test_coco_mode_agrees_with_pycocotools_on_edge_cases():
    rng = np.random.default_rng(1)
    box = [[10, 10, 50, 50]]
    crowd_boxes = np.concatenate(
        [rng.uniform(0, 400, (150, 2)), rng.uniform(0, 400, (150, 2)) + 420], 1
    )
    ground_truth = [
        gt([[10, 10, 50, 50], [60, 60, 90, 90]], [0, 0]),  # duplicates and a miss
        gt(np.zeros((0, 4)), []),  # no ground truth, only false positives
        gt(box, [3]),  # no detections in this image, none at all of class 3
        gt(box, [0]),  # only false positives of its class
        gt(crowd_boxes[:40], np.zeros(40)),  # more than max_det detections of one class
        gt(box, [0]),  # tied scores across images (this and the next)
        gt(box, [0]),
        gt([[0, 0, 10, 10], [2, 0, 12, 10]], [1, 1]),  # equal IoU with two ground truth boxes
    ]
    detections = [
        dets(
            [[10, 10, 50, 50], [11, 11, 50, 50], [10, 10, 49, 52], [200, 200, 220, 220]],
            [0.9, 0.95, 0.3, 0.6],
            [0, 0, 0, 0],
        ),
        dets([[0, 0, 30, 30], [5, 5, 40, 40]], [0.7, 0.2], [0, 2]),  # class 2 has no ground truth
        Detections.empty(),
        dets([[300, 300, 340, 340], [100, 100, 140, 140]], [0.85, 0.4], [0, 0]),
        dets(crowd_boxes, rng.uniform(0, 1, 150), np.zeros(150)),
        dets([[200, 200, 240, 240], [10, 10, 50, 50]], [0.5, 0.5], [0, 0]),
        dets([[10, 10, 50, 50], [12, 10, 50, 50]], [0.5, 0.5], [0, 0]),
        dets([[1, 0, 11, 10], [-3, 0, 7, 10]], [0.9, 0.8], [1, 1]),
    ]
    ours = assert_agrees_with_pycocotools(ground_truth, detections, 4)
    assert math.isnan(ours.ap[2, 0]) and ours.ap[3, 0] == 0.0


# --- properties -----------------------------------------------------------------------------

_corner = st.integers(0, 40)
_size = st.integers(1, 20)
_box = st.tuples(_corner, _corner, _size, _size).map(
    lambda b: [b[0], b[1], b[0] + b[2], b[1] + b[3]]
)


@st.composite
def scenes(draw, num_classes=3):
    """Small images of integer boxes — many exact IoU ties — and detections that copy, nudge or
    invent boxes, with scores from a coarse set so that scores tie too."""
    ground_truth, detections = [], []
    for _ in range(draw(st.integers(1, 4))):
        boxes = draw(st.lists(_box, max_size=6))
        classes = draw(
            st.lists(st.integers(0, num_classes - 1), min_size=len(boxes), max_size=len(boxes))
        )
        ground_truth.append(gt(boxes, classes))
        found_boxes, found_classes = [], []
        for b, c in zip(boxes, classes, strict=True):
            for _ in range(draw(st.integers(0, 2))):
                nudge = draw(st.lists(st.integers(-2, 2), min_size=4, max_size=4))
                x1, y1, x2, y2 = (v + d for v, d in zip(b, nudge, strict=True))
                found_boxes.append([min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)])
                found_classes.append(c)
        invented = draw(st.lists(_box, max_size=3))
        found_boxes += invented
        found_classes += draw(
            st.lists(
                st.integers(0, num_classes - 1), min_size=len(invented), max_size=len(invented)
            )
        )
        scores = draw(
            st.lists(
                st.sampled_from([0.25, 0.5, 0.75, 1.0]),
                min_size=len(found_boxes),
                max_size=len(found_boxes),
            )
        )
        detections.append(dets(found_boxes, scores, found_classes))
    return ground_truth, detections


@settings(max_examples=60, deadline=None)
@given(scenes())
def test_coco_mode_agrees_with_pycocotools_on_random_scenes(scene):
    ground_truth, detections = scene
    if sum(len(d) for d in detections) == 0:  # pycocotools' loadRes can't take an empty list
        assert not (evaluate(ground_truth, detections, 3).ap > 0).any()
        return
    assert_agrees_with_pycocotools(ground_truth, detections, 3)


@settings(max_examples=60, deadline=None)
@given(scenes(), st.sampled_from(["voc", "coco"]))
def test_ap_is_a_fraction_or_nan_for_classes_without_ground_truth(scene, method):
    ground_truth, detections = scene
    result = evaluate(ground_truth, detections, 3, COCO_IOU_THRESHOLDS, method)
    has_gt = result.n_gt > 0
    assert np.isnan(result.ap[~has_gt]).all()
    assert ((result.ap[has_gt] >= 0) & (result.ap[has_gt] <= 1)).all()


@settings(max_examples=60, deadline=None)
@given(scenes(), st.sampled_from(["voc", "coco"]), st.randoms(use_true_random=False))
def test_perfect_detections_give_ap_one(scene, method, random):
    ground_truth, _ = scene
    perfect = [dets(b, [random.random() for _ in c], c) for b, c in ground_truth]
    result = evaluate(ground_truth, perfect, 3, COCO_IOU_THRESHOLDS, method)
    np.testing.assert_array_equal(result.ap[result.n_gt > 0], 1.0)
