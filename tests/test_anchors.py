import itertools

import numpy as np
import pytest
from shared_data import BCCD, needs_bccd

from yolo_cli.anchors import kmeans_anchors, kmeans_plus_plus, mean_best_iou


def test_never_worse_than_kmeans_plus_plus_start():
    rng = np.random.default_rng(1)
    wh = np.concatenate([rng.normal(c, s, (80, 2)) for c, s in [(20, 3), (60, 8), (150, 20)]])
    wh = np.abs(wh) + 1
    for k in range(1, 10):
        for seed in range(3):
            anchors, score = kmeans_anchors(wh, k, seed=seed)
            start = kmeans_plus_plus(wh.astype(np.float32), k, np.random.default_rng(seed))
            assert score >= mean_best_iou(wh, start) - 1e-6
            assert anchors.shape == (k, 2)
            assert np.all(np.diff(anchors.prod(1)) >= 0)


def test_deterministic_for_a_seed():
    wh = np.random.default_rng(2).uniform(5, 100, (200, 2))
    a1, _ = kmeans_anchors(wh, 5, seed=3)
    a2, _ = kmeans_anchors(wh, 5, seed=3)
    np.testing.assert_array_equal(a1, a2)


def test_matches_brute_force_on_tiny_set():
    wh = np.array([[10, 10], [10, 11], [11, 10], [50, 20], [51, 20], [20, 60], [20, 61]], float)
    anchors, score = kmeans_anchors(wh, 3, seed=0)
    # brute force: every assignment of the 7 boxes to 3 groups, centre = median of each group
    best, best_centres = 0.0, None
    for labels in itertools.product(range(3), repeat=len(wh)):
        if len(set(labels)) < 3:
            continue
        centres = np.array([np.median(wh[np.array(labels) == j], 0) for j in range(3)])
        if mean_best_iou(wh, centres) > best:
            best, best_centres = mean_best_iou(wh, centres), centres
    assert score == pytest.approx(best, abs=1e-6)
    assert mean_best_iou(wh, anchors) == pytest.approx(mean_best_iou(wh, best_centres), abs=1e-6)


def test_rejects_bad_k():
    with pytest.raises(ValueError):
        kmeans_anchors(np.ones((3, 2)), 4)
    with pytest.raises(ValueError):
        kmeans_anchors(np.ones((30, 2)), 10)


@needs_bccd
def test_anchors_command_on_bccd():
    from click.testing import CliRunner

    from yolo_cli.cli import cli
    from yolo_cli.data.load import load_dataset
    from yolo_cli.train import scaled_box_shapes

    result = CliRunner().invoke(cli, ["anchors", str(BCCD), "--k", "3", "--img-size", "416"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()  # the dataset's problems are on stderr
    shapes = scaled_box_shapes(load_dataset(BCCD, split="train"), 416)
    assert lines[0] == f"{len(shapes)} boxes, 3 anchors at input 416 (13×13 grid of 32 px cells)"
    rows = np.array([[float(x) for x in line.split()[1:]] for line in lines[2:5]])
    expected, mean_iou = kmeans_anchors(shapes, 3, seed=0)
    np.testing.assert_allclose(rows[:, :2], expected, atol=0.06)
    np.testing.assert_allclose(rows[:, 2:], expected / 32, atol=0.006)
    assert lines[-1] == f"mean best IoU: {mean_iou:.3f}"
