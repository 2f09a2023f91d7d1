"""Exported models on real data: the shipped street model (trained by `yolo train --weights coco`
on highway's photos), exported in every format and precision, detects on highway's 251 test
photos what the .keras model detects (fp32) and scores the same mAP@0.5 (within 0.005 for fp32
and fp16); int8, calibrated on highway's train photos, does not yet keep it within 0.02."""

import pytest
from same_detections import assert_same_detections
from shared_data import HIGHWAY, needs_highway

from yolo_cli.data.image import read_image
from yolo_cli.data.load import load_dataset
from yolo_cli.export import ExportOptions, export_model
from yolo_cli.inference import Detector, Thresholds
from yolo_cli.metrics import evaluate
from yolo_cli.modelfile import shipped_model

pytest.importorskip("ai_edge_litert")
pytest.importorskip("onnxruntime")
pytestmark = [pytest.mark.slow, needs_highway]

# No cap: a cut at max_det could take either of a tie. No voting: a candidate whose score or IoU
# sits on a threshold votes in one runtime and not in the other, and moves its kept box by
# pixels (voting itself is tested in test_postprocess; the mAP below is scored with it).
SHOWN = Thresholds(conf=0.1, max_det=1000, box_vote=False)
LOW = Thresholds(conf=0.001)
STREET = shipped_model("street")


@pytest.fixture(scope="module")
def highway_test():
    """Highway's test split, its images, the .keras model's mAP@0.5 on them and its detections
    at the SHOWN thresholds."""
    dataset = load_dataset(HIGHWAY, "test")
    images = [read_image(s.image) for s in dataset.samples]
    reference = _map50(Detector.from_file(STREET, LOW), dataset, images)
    assert reference > 0.5, reference
    shown = Detector.from_file(STREET, SHOWN).detect(images)
    assert sum(len(d) for d in shown) > 100
    return dataset, images, reference, shown


def _map50(detector, dataset, images):
    truth = [(s.boxes, s.classes) for s in dataset.samples]
    detections = list(detector.detect_stream(images, 16))
    return evaluate(truth, detections, len(dataset.names), names=dataset.names).map


def _exported_map50(fmt, options, out, highway_test):
    """The artifact's path and its mAP@0.5 on highway's test split."""
    dataset, images, _, _ = highway_test
    path = export_model(ExportOptions(str(STREET), fmt, out=str(out), **options))[0]
    return path, _map50(Detector.from_file(path, LOW), dataset, images)


@pytest.mark.parametrize(
    "fmt, half, suffix",
    [
        ("saved_model", False, ""),
        ("tflite", False, ".tflite"),
        ("onnx", False, ".onnx"),
        ("tflite", True, "_fp16.tflite"),
        ("onnx", True, "_fp16.onnx"),
    ],
)
def test_fp32_and_fp16_exports_match_the_keras_model(highway_test, tmp_path, fmt, half, suffix):
    _, images, reference, shown = highway_test
    path, score = _exported_map50(fmt, {"half": half}, tmp_path / f"street{suffix}", highway_test)
    assert abs(score - reference) <= 0.005, (score, reference)
    if not half:
        assert_same_detections(Detector.from_file(path, SHOWN).detect(images), shown)


@pytest.mark.xfail(
    raises=AssertionError,
    strict=True,
    reason="int8 calibrated on 200 highway images loses 0.14 of the street model's mAP@0.5 on "
    "highway's test split (0.49 against 0.63, 2026-12-02); the shipped synthetic model keeps "
    "its mAP within 0.02 (test_export)",
)
def test_int8_export_keeps_the_map(highway_test, tmp_path):
    reference = highway_test[2]
    _, score = _exported_map50(
        "tflite", {"int8_data": str(HIGHWAY)}, tmp_path / "street_int8.tflite", highway_test
    )
    assert abs(score - reference) <= 0.02, (score, reference)
