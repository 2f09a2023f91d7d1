"""yolo export and the runtimes: each exported artifact carries the model's metadata and, run
through its runtime and our decode + NMS, detects what the .keras model detects.

Oracles: the .keras model's own detections (boxes within 0.5 px, same classes, scores within
1e-4 for fp32) and mAP@0.5 on labelled synthetic scenes that the shipped model was trained on
(within 0.005 for fp32/fp16, 0.02 for int8); BatchNorm folding against the unfolded network.
"""

import json
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from click.testing import CliRunner
from keras import layers
from same_detections import assert_same_detections

from yolo_cli.cli import cli
from yolo_cli.config import PACKAGE_ROOT
from yolo_cli.data.image import read_image
from yolo_cli.data.load import load_dataset
from yolo_cli.data.synth import write_synthetic
from yolo_cli.errors import YoloError
from yolo_cli.export import ExportOptions, export_model
from yolo_cli.inference import Detector, Thresholds, fold_batchnorm
from yolo_cli.metrics import evaluate
from yolo_cli.modelfile import load_model, model_outputs, read_meta, shipped_model
from yolo_cli.runtimes import load_runtime

pytest.importorskip("ai_edge_litert")
pytest.importorskip("onnxruntime")
pytest.importorskip("tf2onnx")

SAMPLES = sorted((PACKAGE_ROOT / "data" / "samples").glob("*.jpg"))
BOX_ATOL, SCORE_ATOL = 0.5, 1e-4  # same_detections' defaults, for the raw SavedModel outputs
# No voting: a candidate whose score or IoU sits on a threshold votes in one runtime and not in
# the other, and moves its kept box by pixels (voting itself is tested in test_postprocess).
LOW_CONF = Thresholds(conf=0.05, box_vote=False)
SHIPPED_MACS = 618_848_256  # multiply-adds of the shipped synthetic model at 416 px
FP32 = [("saved_model", ""), ("tflite", ".tflite"), ("onnx", ".onnx")]


@pytest.fixture(scope="module")
def samples():
    return [read_image(p) for p in SAMPLES]


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    """48 labelled synthetic scenes (the shipped model's domain): train split for int8
    calibration, test split for mAP."""
    return write_synthetic(tmp_path_factory.mktemp("scenes") / "synth", 48, seed=7, size=512)


@pytest.fixture(scope="module")
def exported(tmp_path_factory, scenes):
    """The shipped model exported in every format and precision: name → path."""
    out = tmp_path_factory.mktemp("exported")
    paths = {}
    for fmt, suffix in FP32:
        paths[fmt] = export_model(
            ExportOptions("synthetic", fmt, out=str(out / f"m_{fmt}{suffix}"))
        )[0]
    for fmt, suffix in (("tflite", ".tflite"), ("onnx", ".onnx")):
        options = ExportOptions("synthetic", fmt, half=True, out=str(out / f"m_fp16{suffix}"))
        paths[f"{fmt}_fp16"] = export_model(options)[0]
    options = ExportOptions(
        "synthetic",
        "tflite",
        int8_data=str(scenes),
        calib_images=16,
        out=str(out / "m_int8.tflite"),
    )
    paths["tflite_int8"] = export_model(options)[0]
    return paths


def test_fold_batchnorm_is_exact_on_the_shipped_model():
    model, meta = load_model(shipped_model("synthetic"))
    folded = fold_batchnorm(model)
    kinds = [type(layer).__name__ for layer in folded.layers]
    assert "BatchNormalization" not in kinds
    convs_without_bn = len(meta.heads)  # each head's output convolution
    assert len(folded.layers) == len(model.layers) - kinds.count("Conv2D") + convs_without_bn
    size = meta.img_size
    x = np.random.default_rng(0).uniform(0, 255, (2, size, size, 3)).astype(np.float32)
    for got, want in zip(model_outputs(folded, x), model_outputs(model, x), strict=True):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=0, atol=1e-4)


def _random_bn(model, rng):
    for layer in model.layers:
        if isinstance(layer, layers.BatchNormalization):
            n = layer.gamma.shape[0]
            layer.set_weights(
                [
                    rng.uniform(0.5, 2, n),
                    rng.normal(0, 1, n),
                    rng.normal(0, 1, n),
                    rng.uniform(0.1, 3, n),
                ]
            )


def test_fold_batchnorm_folds_what_it_can_and_keeps_the_rest():
    """Conv with bias, depthwise conv and two outputs fold; a BN after a conv whose output is
    also read elsewhere, and a BN after a Concatenate, stay."""
    inputs = keras.Input((16, 16, 3))
    a = layers.Conv2D(8, 3, padding="same", use_bias=True, name="a")(inputs)
    a = layers.BatchNormalization(name="a_bn")(a)
    d = layers.DepthwiseConv2D(3, padding="same", depth_multiplier=2, use_bias=False, name="d")(a)
    d = layers.BatchNormalization(name="d_bn")(d)
    shared = layers.Conv2D(4, 1, use_bias=False, name="shared")(d)
    kept = layers.BatchNormalization(name="kept_bn")(shared)
    cat = layers.Concatenate(name="cat")([kept, shared])
    cat_bn = layers.BatchNormalization(name="cat_bn")(cat)
    out2 = layers.Conv2D(2, 1, name="out2")(d)
    out2 = layers.BatchNormalization(name="out2_bn")(out2)
    model = keras.Model(inputs, [cat_bn, out2])
    _random_bn(model, np.random.default_rng(1))
    folded = fold_batchnorm(model)
    names = {layer.name for layer in folded.layers}
    assert {"kept_bn", "cat_bn"} <= names
    assert not {"a_bn", "d_bn", "out2_bn"} & names
    x = np.random.default_rng(2).uniform(0, 1, (3, 16, 16, 3)).astype(np.float32)
    for got, want in zip(model_outputs(folded, x), model_outputs(model, x)):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=0, atol=1e-4)


@pytest.mark.parametrize("fmt", [f for f, _ in FP32])
def test_artifact_carries_the_metadata(exported, fmt):
    meta = read_meta(exported[fmt])
    source = read_meta(shipped_model("synthetic"))
    record = meta.extra.pop("export")
    assert meta == source
    assert record["format"] == fmt and record["precision"] == "fp32"
    assert record["macs"] == SHIPPED_MACS


def test_metadata_is_inside_not_beside(exported, tmp_path):
    """A copy of the bare file (tflite, onnx) or folder (SavedModel) alone still describes the
    model: nothing is read from a side file."""
    import shutil

    for fmt in ("tflite", "onnx", "saved_model"):
        src = exported[fmt]
        dst = tmp_path / fmt / src.name
        dst.parent.mkdir()
        (shutil.copytree if src.is_dir() else shutil.copy)(src, dst)
        assert read_meta(dst).names == ["pedestrian", "car", "motorcycle"]


@pytest.mark.parametrize("fmt", [f for f, _ in FP32])
def test_fp32_artifact_detects_what_the_keras_model_detects(exported, samples, fmt):
    want = Detector.from_file("synthetic", LOW_CONF).detect(samples)
    detector = Detector.from_file(exported[fmt], LOW_CONF)
    assert detector.runtime == {"saved_model": "tf-saved-model", "tflite": "litert"}.get(
        fmt, "onnxruntime"
    )
    assert sum(len(d) for d in want) > 20
    assert detector.macs == SHIPPED_MACS  # recorded at export: yolo bench's cost column
    assert_same_detections(detector.detect(samples), want)
    assert_same_detections([detector(samples[0])], want[:1])  # batch 1 after batch 4


def test_openvino_runs_the_onnx_export(exported, samples):
    pytest.importorskip("openvino")
    want = Detector.from_file("synthetic", LOW_CONF).detect(samples)
    runtime, meta = load_runtime(exported["onnx"], engine="openvino")
    assert_same_detections(Detector(runtime, meta, LOW_CONF).detect(samples), want)


def _map50(detector, dataset):
    images = [read_image(s.image) for s in dataset.samples]
    truth = [(s.boxes, s.classes) for s in dataset.samples]
    result = evaluate(truth, detector.detect(images), len(dataset.names), names=dataset.names)
    return result.map


def test_map_of_every_precision(exported, scenes):
    test = load_dataset(scenes, "test")
    thresholds = Thresholds(conf=0.001)
    reference = _map50(Detector.from_file("synthetic", thresholds), test)
    assert reference > 0.5  # the shipped model on its own kind of scenes
    tolerance = {"tflite_int8": 0.02}
    for name, path in exported.items():
        got = _map50(Detector.from_file(path, thresholds), test)
        assert abs(got - reference) <= tolerance.get(name, 0.005), (name, got, reference)


def test_int8_records_its_calibration(exported, scenes):
    record = read_meta(exported["tflite_int8"]).extra["export"]
    assert record["precision"] == "int8"
    assert record["calibration"]["data"] == str(scenes)
    assert record["calibration"]["images"] == min(16, len(load_dataset(scenes, "train")))


def test_saved_model_detect_signature_gives_final_detections(exported, samples):
    """The serving signature takes a uint8 batch at the input size and returns what the
    Detector's own graph returns (decode + threshold + NMS inside)."""
    import tensorflow as tf

    from yolo_cli.boxes import resize_image

    loaded = tf.saved_model.load(str(exported["saved_model"]))
    meta = read_meta(shipped_model("synthetic"))
    size = meta.img_size
    batch = np.stack([resize_image(im, size)[0] for im in samples])
    out = loaded.signatures["detect"](images=tf.constant(batch))
    assert out["boxes"].dtype == tf.float32 and out["boxes"].shape[1:] == (100, 4)
    detector = Detector.from_file("synthetic")  # the export's default thresholds are detect's
    boxes, scores, classes, count = detector.raw(batch.astype(np.float32))
    np.testing.assert_array_equal(out["count"].numpy(), count)
    for i, n in enumerate(count):
        np.testing.assert_array_equal(out["classes"].numpy()[i, :n], classes[i, :n])
        np.testing.assert_allclose(out["boxes"].numpy()[i, :n], boxes[i, :n], atol=BOX_ATOL)
        np.testing.assert_allclose(out["scores"].numpy()[i, :n], scores[i, :n], atol=SCORE_ATOL)
    floats = loaded.signatures["detect_float"](images=tf.constant(batch, tf.float32))
    np.testing.assert_array_equal(floats["count"].numpy(), count)
    raw = loaded.signatures["serving_default"](images=tf.constant(batch, tf.float32))
    want = [
        (len(samples), size // h.stride, size // h.stride, len(h.anchors), 8) for h in meta.heads
    ]
    assert sorted(tuple(r.shape) for r in raw.values()) == sorted(want)


@pytest.mark.slow
def test_two_head_sigmoid_stretch_model_exports(tmp_path, samples):
    """The shipped COCO model (two heads, sigmoid classes, stretch resize, depthwise convs)."""
    want = Detector.from_file("coco", LOW_CONF).detect(samples)
    for fmt, suffix in (("tflite", ".tflite"), ("onnx", ".onnx")):
        path = export_model(ExportOptions("coco", fmt, out=str(tmp_path / f"coco{suffix}")))[0]
        meta = read_meta(path)
        assert [h.stride for h in meta.heads] == [32, 16] and meta.resize == "stretch"
        assert_same_detections(Detector.from_file(path, LOW_CONF).detect(samples), want)


def test_export_at_another_input_size(tmp_path, samples):
    path = export_model(
        ExportOptions("synthetic", "onnx", img_size=416, out=str(tmp_path / "m.onnx"))
    )[0]
    assert read_meta(path).img_size == 416
    assert len(Detector.from_file(path).detect(samples)) == len(samples)


def test_cli_export_then_detect_and_eval(tmp_path, scenes):
    runner = CliRunner()
    out = tmp_path / "m.tflite"
    result = runner.invoke(cli, ["export", "synthetic", "--format", "tflite", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert f"wrote {out}" in result.output and "tflite fp32" in result.output
    runs = []
    for model in ("synthetic", str(out)):
        args = ["detect", *map(str, SAMPLES), "--json", "--no-save"]
        result = runner.invoke(cli, [*args, "--model", model])
        assert result.exit_code == 0, result.output
        runs.append([json.loads(line) for line in result.stdout.splitlines() if line[:1] == "{"])
    keras_run, tflite_run = runs
    assert [len(r["detections"]) for r in tflite_run] == [len(r["detections"]) for r in keras_run]
    for a, b in zip(keras_run, tflite_run):
        for da, db in zip(a["detections"], b["detections"]):
            assert da["class"] == db["class"]
            np.testing.assert_allclose(da["xyxy"], db["xyxy"], atol=BOX_ATOL)
    args = ["eval", "--data", str(scenes), "--model", str(out), "--out", str(tmp_path / "ev")]
    result = runner.invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "mAP" in result.output


@pytest.mark.parametrize(
    "args, message",
    [
        (["--format", "tflite", "--half", "--int8", "--data", "x"], "choose one precision"),
        (["--format", "tflite", "--int8"], "--int8 needs --data"),
        (["--format", "onnx", "--int8", "--data", "x"], "--int8 applies to --format tflite"),
        (["--format", "saved_model", "--half"], "--half applies to tflite and onnx"),
        (["nothere.keras", "--format", "onnx"], "nothere.keras: model file not found"),
        (["--format", "onnx", "--out", "m.tflite"], "onnx exports end in .onnx"),
        (["--format", "saved_model", "--out", "m.onnx"], "saved_model exports are folders"),
    ],
)
def test_cli_export_refuses_with_one_line(args, message):
    result = CliRunner().invoke(cli, ["export", *args])
    assert result.exit_code == 2
    assert message in result.output and len(result.output.strip().splitlines()) == 1


def test_foreign_and_corrupt_artifacts_are_refused(tmp_path):
    inputs = keras.Input((32, 32, 3))
    plain = keras.Model(inputs, layers.Conv2D(2, 1)(inputs))
    plain.export(str(tmp_path / "plain.tflite"), format="litert", verbose=False)
    plain.export(str(tmp_path / "plain.onnx"), format="onnx", verbose=False)
    (tmp_path / "junk.tflite").write_bytes(b"\x00" * 64)
    (tmp_path / "junk.onnx").write_bytes(b"not a protobuf at all")
    (tmp_path / "folder").mkdir()
    for name, message in [
        ("plain.tflite", "not a yolo-cli model"),
        ("plain.onnx", "not a yolo-cli model"),
        ("junk.tflite", "not a TFLite model"),
        ("junk.onnx", "not an ONNX model"),
        ("folder", "not a SavedModel"),
        ("missing.onnx", "not found"),
    ]:
        with pytest.raises(YoloError, match=message):
            Detector.from_file(tmp_path / name)
        with pytest.raises(YoloError, match=message):
            read_meta(tmp_path / name)


def test_artifact_whose_network_contradicts_its_metadata_is_refused(exported, tmp_path):
    """Metadata of a 3-class model on a network whose grid has another shape."""
    import onnx

    proto = onnx.load(str(exported["onnx"]))
    meta = json.loads(proto.metadata_props[0].value)
    meta["names"] = ["a", "b"]
    proto.metadata_props[0].value = json.dumps(meta)
    onnx.save(proto, str(tmp_path / "lying.onnx"))
    with pytest.raises(YoloError, match="are not the grids"):
        Detector.from_file(tmp_path / "lying.onnx")


def test_missing_runtime_names_the_extra(exported):
    """Without onnxruntime installed, opening an .onnx model says which extra to install."""
    code = (
        "import sys; sys.modules['onnxruntime'] = None\n"
        "from yolo_cli.errors import YoloError\n"
        "from yolo_cli.runtimes import load_runtime\n"
        f"try:\n    load_runtime({str(exported['onnx'])!r})\n"
        "except YoloError as e:\n    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "pip install 'yolo-cli[export]'" in out.stdout


def test_window_methods_refuse_an_exported_model(exported):
    from yolo_cli.baselines.detector import open_detector

    with pytest.raises(YoloError, match="window classifier's .keras file"):
        open_detector("conv-window", Path(exported["onnx"]))


def test_info_shows_what_an_artifact_carries(exported):
    result = CliRunner().invoke(cli, ["info", str(exported["tflite_int8"])])
    assert result.exit_code == 0, result.output
    assert "classes (3): pedestrian, car, motorcycle" in result.output
    assert "precision: int8" in result.output and "head stride 32" in result.output
