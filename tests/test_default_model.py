"""The shipped model: what it carries, and that detect and eval use it by default."""

import json

import numpy as np
import pytest
from click.testing import CliRunner
from shared_data import HIGHWAY, PHOTOS, needs_highway, needs_photos

from yolo_cli.cli import cli
from yolo_cli.config import DEFAULTS, PACKAGE_ROOT
from yolo_cli.modelfile import read_meta, shipped_model

DEFAULT_MODEL = shipped_model("synthetic")

SAMPLE = PACKAGE_ROOT / "data" / "samples" / "street_1.jpg"


def test_shipped_model_file():
    """Trained with `yolo train`'s defaults (README "The shipped synthetic model"): the default's
    heads, input size and loss."""
    meta = read_meta(DEFAULT_MODEL)
    assert meta.kind == "yolo" and tuple(meta.names) == DEFAULTS.synth_classes
    assert meta.img_size == DEFAULTS.img_size
    assert [h.stride for h in meta.heads] == list(DEFAULTS.head_strides[-DEFAULTS.heads :])
    assert all(len(h.anchors) == DEFAULTS.anchors_per_head for h in meta.heads)
    assert meta.detect_conf == DEFAULTS.iou_conf
    assert DEFAULT_MODEL.stat().st_size <= 20 * 2**20


def test_shipped_model_finds_every_object_of_a_sample_scene():
    """street_1.jpg is scene 5 of seed 100 (data/README.md), which training never saw: each of
    its eight objects, from a pedestrian 21 px wide to the pedestrian 188 px tall and the car
    cut by the right edge, is found with its class (IoU ≥ 0.5) at detect's threshold."""
    from yolo_cli.boxes import iou
    from yolo_cli.data.image import read_image
    from yolo_cli.data.scenes import render_scene, scene_rng
    from yolo_cli.inference import Detector, Thresholds

    image, boxes, classes = render_scene(scene_rng(100, 5), 416, DEFAULTS.synth_classes)
    photo = read_image(SAMPLE)
    assert np.abs(photo.astype(np.float32) - image).mean() < 3  # the JPEG of this scene
    conf = read_meta(DEFAULT_MODEL).detect_conf  # what `yolo detect` uses
    (dets,) = Detector.from_file(DEFAULT_MODEL, Thresholds(conf=conf)).detect([photo])
    overlap = iou(boxes, dets.boxes) * (classes[:, None] == dets.classes[None, :])
    assert len(boxes) == 8 and (overlap.max(axis=1) >= 0.5).all(), overlap.max(axis=1)


def test_detect_uses_the_coco_model_by_default():
    """`yolo detect photo` with no --model: the COCO model at its own threshold (0.25)."""
    dog = PACKAGE_ROOT / "data" / "samples" / "dog.jpg"
    result = CliRunner().invoke(cli, ["detect", str(dog), "--json", "--no-save"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout.strip().splitlines()[0])
    assert (record["width"], record["height"]) == (768, 576)
    found = {d["class"] for d in record["detections"]}
    assert {"dog", "bicycle"} <= found
    assert all(d["score"] > 0.25 for d in record["detections"])


def test_eval_defaults_to_the_synthetic_model():
    from yolo_cli import config

    assert config.EVAL_MODEL == "synthetic" and config.DETECT_MODEL == "coco"


@pytest.mark.slow
def test_shipped_model_map_on_fresh_scenes(tmp_path):
    """What `yolo eval` reports with no arguments: the shipped model on 300 fresh synthetic
    scenes of another seed. measured 0.981 (README); the issue's goal is 0.90."""
    from yolo_cli.evaluate import EvalOptions, run_eval

    report = run_eval(EvalOptions(out=str(tmp_path / "eval")))
    assert len(report.dataset) == 300
    assert report.at_iou.map >= 0.90, report.at_iou.map


@needs_photos
def test_shipped_coco_model_finds_the_course_photos_objects():
    """The converted Yolo-Fastest XL at its own threshold: the dog, the bicycle and the car or
    truck of Darknet's dog.jpg, and cars in every Drive.ai frame (each shows some)."""
    from yolo_cli.data.image import read_image
    from yolo_cli.inference import Detector, Thresholds

    path = shipped_model("coco")
    meta = read_meta(path)
    assert len(meta.names) == 80 and [h.stride for h in meta.heads] == [32, 16]
    assert path.stat().st_size <= 6 * 2**20
    detector = Detector.from_file(path, Thresholds(conf=meta.detect_conf))
    (dog,) = detector.detect([read_image(PHOTOS / "darknet" / "dog.jpg")])
    found = {meta.names[c] for c in dog.classes}
    assert {"dog", "bicycle"} <= found and found & {"car", "truck"}
    frames = sorted((PHOTOS / "driveai").glob("*.jpg"))
    assert len(frames) == 9
    for frame, dets in zip(frames, detector.detect([read_image(f) for f in frames])):
        assert "car" in {meta.names[c] for c in dets.classes}, frame.name


def test_shipped_street_model_file():
    """The highway model fine-tuned from coco: highway's five classes on coco's network."""
    path = shipped_model("street")
    meta = read_meta(path)
    assert tuple(meta.names) == ("bus", "car", "motorbike", "person", "truck")
    assert meta.img_size == 320 and sorted(h.stride for h in meta.heads) == [16, 32]
    assert meta.extra["config"]["weights"] == "coco"
    assert meta.extra["darknet"] == read_meta(shipped_model("coco")).extra["darknet"]
    assert path.stat().st_size <= 6 * 2**20


@pytest.mark.slow
@needs_highway
def test_street_model_beats_coco_on_highway_test_split(tmp_path):
    """Why it ships (README): on highway's test split the street model scores above coco, on
    the five classes they share, at both mAPs and on every class at IoU 0.5."""
    from yolo_cli.evaluate import EvalOptions, run_eval

    street, coco = (
        run_eval(EvalOptions(data=str(HIGHWAY), model=m, out=str(tmp_path / m)))
        for m in ("street", "coco")
    )
    assert len(street.dataset) == len(coco.dataset) == 251
    assert street.at_iou.names == coco.at_iou.names
    assert (street.at_iou.ap[:, 0] > coco.at_iou.ap[:, 0]).all()
    assert street.at_iou.map > coco.at_iou.map
    assert street.coco.map_all > coco.coco.map_all
