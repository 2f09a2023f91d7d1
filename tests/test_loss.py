import numpy as np
import pytest

from yolo_cli.loss import YoloLoss

ANCHORS = np.array([[32.0, 32.0]], np.float32)  # one anchor, 2×2 grid over a 64 px input


def logit(p):
    return np.log(p / (1 - p))


def make(num_classes=2):
    return np.zeros((1, 2, 2, 1, 5 + num_classes), np.float32)


def test_no_object_only_pc_counts_whatever_the_other_outputs():
    """The course's case: y_1 = 0 → only (ŷ_1 − y_1)² counts (times λ_noobj)."""
    loss = YoloLoss(ANCHORS, 64, lambda_noobj=0.5)
    y = make()
    rng = np.random.default_rng(0)
    for _ in range(5):
        raw = rng.normal(0, 3, y.shape).astype(np.float32)
        total, parts = loss(y, np.zeros((1, 4, 4), np.float32), raw)
        p = 1 / (1 + np.exp(-raw[..., 0]))
        assert float(total[0]) == pytest.approx(0.5 * np.sum(p**2), rel=1e-5)
        assert float(parts["coord"][0]) == 0 and float(parts["cls"][0]) == 0


@pytest.mark.parametrize("lambda_obj", [1.0, 5.0])
def test_assigned_object_hand_computed(lambda_obj):
    loss = YoloLoss(
        ANCHORS, 64, lambda_coord=5.0, lambda_obj=lambda_obj, lambda_noobj=0.5, ignore_iou=0.6
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
    total, parts = loss(y, boxes, raw)
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
    loss = YoloLoss(ANCHORS, 64, ignore_iou=0.6)
    y = make()
    raw = make()
    raw[..., 0] = logit(0.9)
    boxes = np.zeros((1, 4, 4), np.float32)
    boxes[0, 0] = [0, 0, 32, 32]  # exactly the box cell (0, 0) predicts: IoU 1 > 0.6
    _, parts = loss(y, boxes, raw)
    assert float(parts["noobj"][0]) == pytest.approx(0.5 * 3 * 0.9**2, rel=1e-5)


def test_per_image_and_gradients_finite():
    import tensorflow as tf

    loss = YoloLoss(ANCHORS, 64)
    y = np.zeros((3, 2, 2, 1, 7), np.float32)
    raw = tf.Variable(np.random.default_rng(1).normal(0, 50, y.shape).astype(np.float32))
    with tf.GradientTape() as tape:
        total, _ = loss(y, np.zeros((3, 0, 4), np.float32), raw)
        s = tf.reduce_sum(total)
    assert total.shape == (3,)
    assert np.isfinite(tape.gradient(s, raw).numpy()).all()
