"""Test-time augmentation and ensembles: passes, mirrors, weighted boxes fusion, the CLI."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from rendered import SIZE, patch_scene, save_hand_model, score, write_coco

from yolo_cli.cli import cli
from yolo_cli.ensemble import MergedDetector, Pass, fuse, mirror, open_detectors, tta_sizes
from yolo_cli.inference import Thresholds
from yolo_cli.postprocess import Detections, batched_nms

NAMES = ["pedestrian", "car", "motorcycle"]


def dets(boxes, scores, classes) -> Detections:
    return Detections(
        np.array(boxes, np.float32).reshape(-1, 4),
        np.array(scores, np.float32),
        np.array(classes, np.int32),
    )


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    return {
        "fixed": save_hand_model(folder / "fixed.keras", NAMES, detects=1),
        "resizable": save_hand_model(folder / "sized.keras", NAMES, detects=1, resizable=True),
    }


# --- fusion -----------------------------------------------------------------------------------


def test_mirror_maps_boxes_back_onto_the_image():
    found = dets([[10, 5, 30, 25]], [0.9], [1])
    np.testing.assert_array_equal(mirror(found, 100).boxes, [[70, 5, 90, 25]])
    np.testing.assert_array_equal(mirror(mirror(found, 100), 100).boxes, found.boxes)


def test_fusion_averages_overlapping_boxes_of_a_class_weighted_by_score():
    one = dets([[0, 0, 10, 10], [50, 50, 60, 60]], [0.9, 0.4], [1, 1])
    two = dets([[2, 0, 12, 10]], [0.3], [1])  # IoU 8/12 with the first box
    fused = fuse([one, two], iou_threshold=0.5)
    np.testing.assert_allclose(fused.boxes, [[0.5, 0, 10.5, 10], [50, 50, 60, 60]], atol=1e-5)
    # mean score × the share of passes that found it
    np.testing.assert_allclose(fused.scores, [0.6, 0.2], atol=1e-6)
    assert fused.classes.tolist() == [1, 1]


def test_fusion_takes_one_box_of_each_pass_into_a_cluster():
    """A pass's duplicate that its NMS let through (IoU 0.48 with its best box) overlaps the
    fused box (IoU 0.6) once the other pass moved it: counted, it would pull the object's
    score from 0.9 to 0.63."""
    one = dets([[0, 0, 10, 10], [3.5, 0, 13.5, 10]], [0.9, 0.1], [1, 1])
    two = dets([[2, 0, 12, 10]], [0.9], [1])
    fused = fuse([one, two], iou_threshold=0.5)
    np.testing.assert_allclose(fused.boxes, [[1, 0, 11, 10]], atol=1e-5)
    np.testing.assert_allclose(fused.scores, [0.9], atol=1e-6)
    alone = fuse([dets([[3.5, 0, 13.5, 10]], [0.1], [1]), two], iou_threshold=0.5)
    np.testing.assert_allclose(alone.scores, [0.5], atol=1e-6)  # another pass's box joins


def test_fusion_keeps_classes_apart():
    one = dets([[0, 0, 10, 10]], [0.9], [0])
    two = dets([[0, 0, 10, 10]], [0.8], [2])
    fused = fuse([one, two], iou_threshold=0.5)
    assert sorted(fused.classes.tolist()) == [0, 2]
    np.testing.assert_allclose(sorted(fused.scores), [0.4, 0.45], atol=1e-6)


def test_fusion_of_one_pass_changes_nothing_and_conf_and_max_det_apply():
    rng = np.random.default_rng(0)
    corner = rng.uniform(0, 200, (300, 2))
    boxes = np.concatenate([corner, corner + rng.uniform(5, 60, (300, 2))], 1)
    scores = rng.uniform(0, 1, 300).astype(np.float32)
    classes = rng.integers(0, 3, 300)
    keep = batched_nms(boxes, scores, classes, 0.5)  # what one detector gives
    single = dets(boxes[keep], scores[keep], classes[keep])
    fused = fuse([single], iou_threshold=0.5, max_det=len(single))
    np.testing.assert_array_equal(fused.boxes, single.boxes)
    np.testing.assert_array_equal(fused.scores, single.scores)
    np.testing.assert_array_equal(fused.classes, single.classes)
    capped = fuse([single], iou_threshold=0.5, conf=0.5, max_det=10)
    assert len(capped) == 10 and capped.scores.min() > 0.5
    np.testing.assert_array_equal(capped.scores, single.scores[:10])


# --- passes, the mirror, scales ---------------------------------------------------------------


def test_tta_sizes_are_multiples_of_32_around_the_model_s_own():
    assert tta_sizes(416) == [416, 320, 512]
    assert tta_sizes(128) == [128, 96, 160]
    assert tta_sizes(64) == [64, 32, 96]  # at least a stride apart
    assert tta_sizes(32) == [32, 64]


def test_the_mirrored_pass_finds_the_mirrored_box(models):
    detector = open_detectors([models["fixed"]], thresholds=Thresholds(conf=0.5))
    image, (box,) = patch_scene([(1, 0)])  # a patch in the left column
    (plain,) = detector.detect([image])
    np.testing.assert_allclose(plain.boxes, [box], atol=1e-3)
    # the network sees the patch in the right column of the mirror …
    (seen,) = detector.detect([np.ascontiguousarray(image[:, ::-1])])
    np.testing.assert_allclose(
        seen.boxes, [[SIZE - box[2], box[1], SIZE - box[0], box[3]]], atol=1e-3
    )
    # … and the mirrored pass puts it back where it is in the image
    (back,) = Pass(detector, mirror=True).detect([image])
    np.testing.assert_allclose(back.boxes, [box], atol=1e-3)
    merged = MergedDetector([Pass(detector), Pass(detector, mirror=True)], Thresholds(conf=0.5))
    (fused,) = merged.detect([image])
    np.testing.assert_allclose(fused.boxes, [box], atol=1e-3)
    np.testing.assert_allclose(fused.scores, [score(3)], rtol=1e-5)
    assert fused.classes.tolist() == [1]


def test_augment_rebuilds_the_model_at_other_sizes_where_it_can(models):
    sized = open_detectors([models["resizable"]], augment=True)
    assert [(p.detector.meta.img_size, p.mirror) for p in sized.passes] == [
        (128, False), (128, True), (96, False), (96, True), (160, False), (160, True)
    ]  # fmt: skip
    fixed = open_detectors([models["fixed"]], augment=True)
    assert [(p.detector.meta.img_size, p.mirror) for p in fixed.passes] == [
        (128, False), (128, True)
    ]  # fmt: skip
    # a patch in the top-left cell at every size: each pass finds it there, in its own grid
    image, _ = patch_scene([(0, 0)])
    for p, (found,) in zip(sized.passes, sized.detect_passes([image]), strict=True):
        k = SIZE / p.detector.meta.img_size
        expected = [16 * k - 10 * k, 16 * k - 12 * k, 16 * k + 10 * k, 16 * k + 12 * k]
        np.testing.assert_allclose(found.boxes, [expected], atol=1e-3)


def test_an_ensemble_of_a_model_with_itself_is_the_model(tmp_path):
    """An untrained network at a low threshold: many boxes, every one must come through."""
    from yolo_cli.model import build_model
    from yolo_cli.modelfile import Head, ModelMeta, save_model

    anchors = [[20.0, 30.0], [60.0, 40.0]]
    path = save_model(
        build_model(3, np.array(anchors), 128, width=0.25),
        tmp_path / "m.keras",
        ModelMeta("yolo", NAMES, 128, [Head(32, anchors)]),
    )
    t = Thresholds(conf=0.05, nms_iou=0.5, max_det=100)
    single = open_detectors([path], thresholds=t)
    double = open_detectors([path, path], thresholds=t)
    assert isinstance(double, MergedDetector) and len(double.passes) == 2
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (h, w, 3), dtype=np.uint8) for h, w in [(128, 128), (90, 150)]]
    for one, two in zip(single.detect(images), double.detect(images), strict=True):
        assert len(one) > 5

        def ordered(d):
            return d.take(np.lexsort((*d.boxes.T[::-1], d.classes, -d.scores)))

        one, two = ordered(one), ordered(two)
        np.testing.assert_array_equal(one.classes, two.classes)
        np.testing.assert_allclose(two.boxes, one.boxes, atol=1e-4)
        np.testing.assert_allclose(two.scores, one.scores, rtol=1e-6)


def test_an_ensemble_needs_models_of_the_same_classes(tmp_path, models):
    from yolo_cli.errors import YoloError

    other = save_hand_model(tmp_path / "other.keras", ["cat", "dog", "fox"], detects=1)
    with pytest.raises(YoloError, match="an ensemble's models name the same classes"):
        open_detectors([models["fixed"], other])


def two_scenes(folder):
    """A COCO dataset of two rendered scenes with three cars; returns its labels file."""
    scenes = [patch_scene(cells) for cells in ([(1, 0)], [(0, 2), (3, 3)])]
    images = [(f"s{i}.png", im, boxes, [2] * len(boxes)) for i, (im, boxes) in enumerate(scenes)]
    return write_coco(folder, images, {1: "pedestrian", 2: "car", 3: "motorcycle"})


def test_eval_with_augment_and_an_ensemble(tmp_path, models):
    labels = two_scenes(tmp_path / "data")
    out = tmp_path / "eval"
    args = ["eval", "--data", str(labels), "--model", str(models["fixed"]), "--augment"]
    result = CliRunner().invoke(
        cli, [*args, "--model", str(models["fixed"]), "--device", "cpu", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["augment"] is True and len(metrics["models"]) == 2
    assert "4 passes fused (WBF)" in metrics["source"]
    # four passes that agree: the same boxes at the same scores as the plain model
    assert metrics["mAP@0.5"] == pytest.approx(1.0)
    assert metrics["classes"][1]["score_threshold"] == pytest.approx(score(3), rel=1e-5)

    refused = CliRunner().invoke(
        cli, ["eval", "--data", str(labels), "--predictions", str(labels), "--augment"]
    )
    assert refused.exit_code == 2 and "apply to a model, not to --predictions" in refused.output


def test_tensorflow_s_advice_to_programmers_stays_out_of_a_user_s_output(tmp_path, models):
    """Two resizable models with --augment make six detectors, each tracing its first call:
    TensorFlow then logs a retracing warning meant for whoever wrote the code. A fresh
    process, as a user runs it: only the result lines reach stderr."""
    labels = two_scenes(tmp_path / "data")
    ensemble = ["--model", str(models["resizable"])] * 2
    args = ["eval", "--data", str(labels), *ensemble, "--augment", "--device", "cpu"]
    command = [sys.executable, "-m", "yolo_cli.cli", *args, "--out", str(tmp_path / "eval")]
    # without the TF_CPP_MIN_LOG_LEVEL=0 that an in-process --debug run leaves in os.environ
    env = {k: v for k, v in os.environ.items() if not k.startswith("TF_CPP")}
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "WARNING" not in done.stderr and "retracing" not in done.stderr, done.stderr
    assert "12 passes fused (WBF)" in done.stdout
