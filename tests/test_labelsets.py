"""Scoring a model on a dataset whose class list differs: matching, remapping, the report."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from yolo_cli.cli import cli
from yolo_cli.errors import YoloError
from yolo_cli.labelsets import match_classes, parse_class_map
from yolo_cli.postprocess import Detections

VOC = ["aeroplane", "bicycle", "person", "motorbike", "tvmonitor", "sofa", "diningtable", "cow"]
COCO = ["person", "bicycle", "car", "motorcycle", "airplane", "couch", "dining table", "tv"]


def pairs(match):
    return {(match.model_names[m], match.dataset_names[d], how) for m, d, how in match.pairs}


def test_same_names_spellings_and_synonyms_match():
    match = match_classes(COCO, VOC)
    assert pairs(match) == {
        ("person", "person", "same name"),
        ("bicycle", "bicycle", "same name"),
        ("motorcycle", "motorbike", "synonym"),
        ("airplane", "aeroplane", "synonym"),
        ("couch", "sofa", "synonym"),
        ("tv", "tvmonitor", "synonym"),
        ("dining table", "diningtable", "spelling"),
    }
    assert match.unscored == ["cow"] and match.dropped == ["car"]
    assert match.scored_names == [n for n in VOC if n != "cow"]  # dataset order


def test_case_and_the_synthetic_classes():
    match = match_classes(["Person", "car", "motorcycle"], ["pedestrian", "Car", "motorcycle"])
    assert pairs(match) == {
        ("Person", "pedestrian", "synonym"),
        ("car", "Car", "spelling"),
        ("motorcycle", "motorcycle", "same name"),
    }


def test_class_map_says_more_and_wins():
    match = match_classes(
        ["truck", "bus", "person", "pedestrian"],
        ["vehicle", "person"],
        parse_class_map("Truck=vehicle, bus=VEHICLE,pedestrian=person"),
    )
    assert pairs(match) == {
        ("truck", "vehicle", "--class-map"),
        ("bus", "vehicle", "--class-map"),
        ("pedestrian", "person", "--class-map"),
    }
    assert match.dropped == ["person"]  # its namesake was taken by the map
    assert "vehicle ← truck (--class-map) + bus (--class-map)" in match.lines()[0]


@pytest.mark.parametrize(
    "model, data, class_map, message",
    [
        (["cat"], ["dog"], "", "share none with the dataset's"),
        (["cat"], ["dog"], "cow=dog", "'cow' is not a class of"),
        (["cat"], ["dog"], "cat=cow", "'cow' is not a class of the dataset"),
        (["cat"], ["dog", "fox"], "cat=dog,cat=fox", "'cat' is mapped twice"),
        (["cat"], ["dog"], "cat", "expected MODEL=DATASET pairs"),
        (["cat"], ["dog"], "=dog", "expected MODEL=DATASET pairs"),
    ],
)
def test_what_cannot_be_matched_is_one_error(model, data, class_map, message):
    with pytest.raises(YoloError, match=message):
        match_classes(model, data, parse_class_map(class_map))


def test_detections_and_ground_truth_move_to_the_scored_classes():
    match = match_classes(["dog", "automobile", "person"], ["pedestrian", "car", "bus"])
    assert match.scored == [0, 1]
    dets = Detections(
        np.arange(12, dtype=np.float32).reshape(3, 4),
        np.array([0.9, 0.8, 0.7], np.float32),
        np.array([1, 0, 2], np.int32),
    )
    moved = match.detections(dets)
    assert moved.classes.tolist() == [1, 0]  # car, pedestrian; the dog is dropped
    np.testing.assert_array_equal(moved.boxes, dets.boxes[[0, 2]])
    boxes, classes = match.ground_truth(np.ones((3, 4), np.float32), np.array([2, 1, 0]))
    assert classes.tolist() == [1, 0] and boxes.shape == (2, 4)  # the bus is not scored


def test_identical_names_report_nothing():
    assert match_classes(["a", "b"], ["a", "b"]).lines() == []


def test_eval_scores_a_model_of_other_classes_on_the_classes_it_shares(tmp_path):
    """The hand-set model finds every white patch as "automobile"; the dataset labels them
    "car", and also has buses (no model class) the model cannot score."""
    from rendered import patch_scene, save_hand_model, write_coco

    cars = [patch_scene(cells) for cells in ([(1, 1)], [(0, 2), (3, 0)])]
    images = [
        (f"c{i}.png", image, boxes, [1] * len(boxes)) for i, (image, boxes) in enumerate(cars)
    ]
    bus = np.array([[10, 10, 60, 40]], np.float32)
    images.append(("bus.png", np.zeros((128, 128, 3), np.uint8), bus, [2]))
    labels = write_coco(tmp_path / "data", images, {1: "car", 2: "bus", 3: "pedestrian"})
    model = save_hand_model(tmp_path / "m.keras", ["dog", "automobile", "person"], detects=1)
    out = tmp_path / "eval"
    args = ["eval", "--data", str(labels), "--model", str(model), "--device", "cpu"]
    result = CliRunner().invoke(cli, [*args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["mAP@0.5"] == pytest.approx(1.0)  # car 1.0; pedestrian has no ground truth
    assert [c["name"] for c in metrics["classes"]] == ["car", "pedestrian"]
    assert metrics["class_match"]["not_scored"] == ["bus"]
    assert metrics["class_match"]["model_classes_dropped"] == ["dog"]
    lines = result.stdout.splitlines()
    assert (
        "scored 2 of 3 dataset classes: car ← automobile (synonym), pedestrian ← person (synonym)"
        in lines
    )
    assert "not scored (no model class): bus" in lines

    mapped = CliRunner().invoke(
        cli, [*args, "--class-map", "dog=bus", "--out", str(tmp_path / "m")]
    )
    assert mapped.exit_code == 0, mapped.output
    metrics = json.loads((tmp_path / "m" / "metrics.json").read_text())
    assert metrics["mAP@0.5"] == pytest.approx(0.5)  # the buses are scored now, and all missed
    assert "bus ← dog (--class-map)" in mapped.stdout
