import numpy as np
import pytest

from yolo_cli.boxes import ciou_tf
from yolo_cli.loss import IouAwareLoss, YoloLoss
from yolo_cli.modelfile import Head

ANCHORS = np.array([[32.0, 32.0]], np.float32)  # one anchor, 2×2 grid over a 64 px input
HEADS = [Head(32, ANCHORS.tolist())]


def logit(p):
    return np.log(p / (1 - p))


def make(num_classes=2):
    return np.zeros((1, 2, 2, 1, 5 + num_classes), np.float32)


def test_no_object_only_pc_counts_whatever_the_other_outputs():
    """The course's case: y_1 = 0 → only (ŷ_1 − y_1)² counts (times λ_noobj)."""
    loss = YoloLoss(HEADS, 64, lambda_noobj=0.5)
    y = make()
    rng = np.random.default_rng(0)
    for _ in range(5):
        raw = rng.normal(0, 3, y.shape).astype(np.float32)
        total, parts = loss([y], np.zeros((1, 4, 4), np.float32), [raw])
        p = 1 / (1 + np.exp(-raw[..., 0]))
        assert float(total[0]) == pytest.approx(0.5 * np.sum(p**2), rel=1e-5)
        assert float(parts["coord"][0]) == 0 and float(parts["cls"][0]) == 0


@pytest.mark.parametrize("lambda_obj", [1.0, 5.0])
def test_assigned_object_hand_computed(lambda_obj):
    loss = YoloLoss(
        HEADS, 64, lambda_coord=5.0, lambda_obj=lambda_obj, lambda_noobj=0.5, ignore_iou=0.6
    )
    y = make()
    y[0, 0, 1, 0, :5] = [1, 0.5, 0.25, np.log(1.5), 0.0]  # box centre (48, 8), 48×32
    y[0, 0, 1, 0, 5:] = [0, 1]
    raw = make()
    raw[..., 0] = logit(0.2)  # every p̂_c = 0.2
    raw[0, 0, 1, 0, :5] = [logit(0.8), 0.0, 0.0, 0.0, 0.0]  # offsets 0.5, 0.5; t_w = t_h = 0
    raw[0, 0, 1, 0, 5:] = [0.0, 0.0]
    boxes = np.zeros((1, 4, 4), np.float32)
    boxes[0, 0] = [24, -8, 72, 24]
    total, parts = loss([y], boxes, [raw])
    coord = 5.0 * ((0.5 - 0.5) ** 2 + (0.5 - 0.25) ** 2 + np.log(1.5) ** 2 + 0.0)
    obj = lambda_obj * (0.8 - 1) ** 2
    cls = np.log(2.0)  # cross-entropy of a uniform prediction over 2 classes
    # the three empty cells predict 32×32 boxes at their centres; their best IoU with the
    # ground truth is < 0.6, so all three are pushed toward p_c = 0
    noobj = 0.5 * 3 * 0.2**2
    assert float(parts["coord"][0]) == pytest.approx(coord, rel=1e-5)
    assert float(parts["obj"][0]) == pytest.approx(obj, rel=1e-5)
    assert float(parts["cls"][0]) == pytest.approx(cls, rel=1e-5)
    assert float(parts["noobj"][0]) == pytest.approx(noobj, rel=1e-5)
    assert float(total[0]) == pytest.approx(coord + obj + cls + noobj, rel=1e-5)


def test_good_unassigned_prediction_is_not_pushed_to_zero():
    loss = YoloLoss(HEADS, 64, ignore_iou=0.6)
    y = make()
    raw = make()
    raw[..., 0] = logit(0.9)
    boxes = np.zeros((1, 4, 4), np.float32)
    boxes[0, 0] = [0, 0, 32, 32]  # exactly the box cell (0, 0) predicts: IoU 1 > 0.6
    _, parts = loss([y], boxes, [raw])
    assert float(parts["noobj"][0]) == pytest.approx(0.5 * 3 * 0.9**2, rel=1e-5)


def test_per_image_and_gradients_finite():
    import tensorflow as tf

    loss = YoloLoss(HEADS, 64)
    y = np.zeros((3, 2, 2, 1, 7), np.float32)
    raw = tf.Variable(np.random.default_rng(1).normal(0, 50, y.shape).astype(np.float32))
    with tf.GradientTape() as tape:
        total, _ = loss([y], np.zeros((3, 0, 4), np.float32), [raw])
        s = tf.reduce_sum(total)
    assert total.shape == (3,)
    assert np.isfinite(tape.gradient(s, raw).numpy()).all()


# --- the IoU-aware loss ------------------------------------------------------------------------


def test_ciou_of_known_pairs():
    a = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10]], np.float32)
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 0, 30, 10]], np.float32)
    got = ciou_tf(a, b).numpy()
    # identical: 1; half-shifted: IoU 1/3 minus d²/c² = 25/(15² + 10²); apart: 0 − 400/(30² + 10²)
    np.testing.assert_allclose(got, [1.0, 1 / 3 - 25 / 325, -400 / 1000], atol=1e-5)


def test_iou_loss_perfect_slot_and_empty_image():
    heads = [Head(32, [[32.0, 32.0]], 2.0)]
    loss = IouAwareLoss(heads, 64)
    y = make(1)
    y[0, 0, 1, 0, :5] = [1, 0.5, 0.5, 0.0, 0.0]  # box centred in cell (0, 1), 32×32
    y[0, 0, 1, 0, 5] = 1
    raw = make(1)
    raw[..., 0] = -8.0
    raw[0, 0, 1, 0, 0] = 8.0  # p̂_c ≈ 1 where the object is; its box exactly the target's
    boxes = np.zeros((1, 4, 4), np.float32)
    boxes[0, 0] = [32, 0, 64, 32]
    _, parts = loss([y], boxes, [raw])
    assert float(parts["coord"][0]) == pytest.approx(0.0, abs=1e-5)
    assert float(parts["obj"][0]) < 1e-3 and float(parts["noobj"][0]) < 1e-3
    # an empty image: only the p_c term, toward 0 everywhere
    total, parts = loss([make(1)], np.zeros((1, 4, 4), np.float32), [make(1)])
    assert float(parts["coord"][0]) == float(parts["cls"][0]) == float(parts["obj"][0]) == 0
    weight = (64 / 640) ** 2 * 3 * 4.0 / 4  # obj weight · balance / slots
    assert float(total[0]) == pytest.approx(weight * 4 * np.log(2), rel=1e-5)


def test_iou_loss_gradients_finite_on_wild_outputs():
    import tensorflow as tf

    heads = [Head(16, [[10, 10], [20, 30]], 2.0), Head(32, [[40, 40]], 2.0)]
    loss = IouAwareLoss(heads, 64)
    rng = np.random.default_rng(2)
    ys = [np.zeros((3, 4, 4, 2, 7), np.float32), np.zeros((3, 2, 2, 1, 7), np.float32)]
    ys[0][0, 1, 1, 0, :6] = [1, 0.3, 1.2, 0.1, -0.2, 1]
    raws = [tf.Variable(rng.normal(0, 30, y.shape).astype(np.float32)) for y in ys]
    with tf.GradientTape() as tape:
        total, _ = loss(ys, np.zeros((3, 2, 4), np.float32), raws)
        s = tf.reduce_sum(total)
    assert total.shape == (3,) and np.isfinite(total.numpy()).all()
    assert all(np.isfinite(g.numpy()).all() for g in tape.gradient(s, raws))


def test_iou_loss_box_and_class_terms_are_per_head_means_summed():
    """YOLOv5's weighing: each head's box and class errors are averaged over that head's
    assigned slots in the batch; the heads' means add up, times 3 / n_heads."""
    heads = [Head(16, [[16.0, 16.0]]), Head(32, [[32.0, 32.0]])]
    loss = IouAwareLoss(heads, 64, lambda_box=1.0, lambda_cls=1.0)
    fine, coarse = np.zeros((2, 4, 4, 1, 7), np.float32), np.zeros((2, 2, 2, 1, 7), np.float32)

    def assign(grid, image, cell, side):
        # centred in the cell, ``side`` times the anchor: with the raw outputs all 0 the slot
        # predicts the anchor's box at the same centre, so 1 − CIoU = 1 − 1 / side²
        grid[image, cell, cell, 0, :6] = [1, 0.5, 0.5, np.log(side), np.log(side), 1]

    assign(fine, 0, 1, 2.0)  # 0.75
    assign(fine, 1, 2, np.sqrt(2.0))  # 0.5
    assign(coarse, 0, 0, 2.0)  # 0.75; image 1 has nothing on the coarse head
    raws = [np.zeros_like(fine), np.zeros_like(coarse)]
    _, parts = loss([fine, coarse], np.zeros((2, 1, 4), np.float32), raws)
    # fine head: 2 slots in a batch of 2, one per image; coarse: 1 slot, half a slot per image
    np.testing.assert_allclose(parts["coord"], [1.5 * (0.75 + 0.75 / 0.5), 1.5 * 0.5], rtol=1e-5)
    ce = np.log(2.0)  # two classes, equal logits
    np.testing.assert_allclose(parts["cls"], [1.5 * (ce + ce / 0.5), 1.5 * ce], rtol=1e-5)
