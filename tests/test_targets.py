import numpy as np
import pytest

from yolo_cli.boxes import iou
from yolo_cli.modelfile import Head
from yolo_cli.postprocess import grid_to_boxes
from yolo_cli.targets import assign_targets, encode_targets, pad_boxes

ANCHORS = np.array([[20, 20], [60, 30], [30, 90], [150, 150]], np.float32)


def random_boxes(rng, n, size=416):
    wh = rng.uniform(8, 200, (n, 2))
    xy = rng.uniform(0, size - wh)
    return np.concatenate([xy, xy + wh], 1).astype(np.float32)


def test_box_goes_to_midpoint_cell_and_best_anchor():
    box = np.array([[100, 40, 160, 70]], np.float32)  # centre (130, 55), 60×30
    target, collisions = encode_targets(box, [2], ANCHORS, 416, 13, 3)
    assert collisions == 0
    ((r, c, a),) = np.argwhere(target[..., 0] == 1)
    assert (r, c, a) == (55 // 32, 130 // 32, 1)
    np.testing.assert_allclose(target[r, c, a, 1:3], [130 / 32 - 4, 55 / 32 - 1], atol=1e-6)
    np.testing.assert_allclose(target[r, c, a, 3:5], [0, 0], atol=1e-6)
    np.testing.assert_array_equal(target[r, c, a, 5:], [0, 0, 1])
    assert target.sum() == pytest.approx(1 + target[r, c, a, 1:5].sum() + 1)


def test_round_trip_recovers_every_box(tf_module=None):
    rng = np.random.default_rng(0)
    for _ in range(20):
        boxes = random_boxes(rng, 12)
        classes = rng.integers(0, 3, 12)
        target, collisions = encode_targets(boxes, classes, ANCHORS, 416, 13, 3)
        decoded, p_c, probs = grid_to_boxes(target[None], ANCHORS, 416)
        found = p_c.numpy()[0] == 1
        assert found.sum() == len(boxes) - collisions
        got = decoded.numpy()[0][found]
        got_cls = probs.numpy()[0][found].argmax(1)
        best = iou(boxes, got).max(axis=1)
        assert (best > 0.99).sum() == len(boxes) - collisions
        for b, c in zip(got, got_cls):
            k = iou(b[None], boxes)[0].argmax()
            assert classes[k] == c


def test_collision_takes_next_free_anchor_then_counts():
    same = np.array([[100, 100, 120, 120]] * 5, np.float32)
    target, collisions = encode_targets(same, [0] * 5, ANCHORS, 416, 13, 1)
    assert target[..., 0].sum() == 4
    assert collisions == 1


def test_degenerate_and_empty():
    target, collisions = encode_targets(np.zeros((0, 4)), [], ANCHORS, 416, 13, 3)
    assert target.shape == (13, 13, 4, 8) and not target.any() and collisions == 0
    target, _ = encode_targets(np.array([[5, 5, 5, 30]]), [0], ANCHORS, 416, 13, 3)
    assert not target.any()


def test_pad_boxes_keeps_largest():
    boxes = np.array([[0, 0, 1, 1], [0, 0, 10, 10], [0, 0, 5, 5]], np.float32)
    out = pad_boxes(boxes, 2)
    np.testing.assert_array_equal(out, [[0, 0, 10, 10], [0, 0, 5, 5]])
    assert pad_boxes(np.zeros((0, 4)), 3).shape == (3, 4)


# --- several heads; the `ratio` rule ---------------------------------------------------------


HEADS = [
    Head(16, [[20, 20], [40, 30], [30, 60]], 2.0),
    Head(32, [[80, 80], [150, 100], [120, 200]], 2.0),
]


def test_best_rule_picks_the_head_of_the_best_anchor():
    small = np.array([[100, 100, 140, 130]], np.float32)  # 40×30: anchor 1 of the stride-16 head
    large = np.array([[10, 10, 160, 110]], np.float32)  # 150×100: anchor 1 of the stride-32 head
    grids, dropped = assign_targets(np.concatenate([small, large]), [0, 1], HEADS, 416, 2)
    assert dropped == 0
    assert [tuple(map(tuple, np.argwhere(g[..., 0] == 1))) for g in grids] == [
        ((115 // 16, 120 // 16, 1),),
        ((60 // 32, 85 // 32, 1),),
    ]


def test_ratio_rule_uses_neighbour_cells_and_every_fitting_anchor():
    # centre (120, 116) in stride-16 cell (7, 7) at offsets (0.5, 0.25): the vertical neighbour
    # above (row 6) and, x exactly half-way, the right neighbour (col 8); 48×40 fits anchors
    # with w and h ratios < 4: stride 16's three, stride 32's 80×80 and 150×100 (not 120×200)
    box = np.array([[96, 96, 144, 136]], np.float32)
    grids, dropped = assign_targets(box, [1], HEADS, 416, 2, rule="ratio")
    assert dropped == 0
    fine = {tuple(x) for x in np.argwhere(grids[0][..., 0] == 1)}
    assert fine == {(r, c, a) for r, c in [(7, 7), (7, 8), (6, 7)] for a in range(3)}
    coarse = {tuple(x) for x in np.argwhere(grids[1][..., 0] == 1)}
    assert {a for _, _, a in coarse} == {0, 1}
    # each slot decodes (scale_xy 2) to exactly the box
    for grid, head in zip(grids, HEADS):
        decoded, p_c, _ = grid_to_boxes(grid[None], np.array(head.anchors), 416)
        got = decoded.numpy()[0][p_c.numpy()[0] == 1]
        np.testing.assert_allclose(got, np.repeat(box, len(got), 0), atol=1e-3)
    offsets = grids[0][..., 1:3][grids[0][..., 0] == 1]
    assert offsets.min() >= -0.5 and offsets.max() <= 1.5


def test_ratio_rule_keeps_a_box_no_anchor_fits():
    sliver = np.array([[0, 200, 400, 204]], np.float32)  # 400×4: every ratio > 4
    grids, dropped = assign_targets(sliver, [0], HEADS, 416, 1, rule="ratio")
    assert dropped == 0 and sum(int(g[..., 0].sum()) for g in grids) >= 1
