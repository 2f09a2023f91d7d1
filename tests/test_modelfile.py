import json
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest
from click.testing import CliRunner

from yolo_cli.cli import cli
from yolo_cli.errors import YoloError
from yolo_cli.model import build_model
from yolo_cli.modelfile import Head, ModelMeta, load_model, read_meta, save_model

ANCHORS = [[20.0, 30.0], [60.0, 50.0]]


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    model = build_model(2, np.array(ANCHORS), 64, width=0.25)
    meta = ModelMeta("yolo", ["cat", "dog"], 64, [Head(32, ANCHORS)], extra={"note": "test"})
    path = save_model(model, tmp_path_factory.mktemp("m") / "small.keras", meta)
    return model, meta, path


def test_round_trip_carries_names_anchors_size(small):
    model, meta, path = small
    loaded, got = load_model(path)
    assert got == meta
    x = np.random.default_rng(0).uniform(0, 255, (1, 64, 64, 3)).astype(np.float32)
    np.testing.assert_allclose(loaded(x).numpy(), model(x).numpy(), atol=1e-5)
    assert not list(path.parent.glob(".*tmp*"))


def test_plain_keras_file_is_not_a_yolo_model(tmp_path):
    path = tmp_path / "plain.keras"
    keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]).save(path)
    with pytest.raises(YoloError, match="not a yolo-cli model"):
        load_model(path)


def test_corrupt_and_missing_files(tmp_path, small):
    bad = tmp_path / "bad.keras"
    bad.write_bytes(b"\x00garbage" * 100)
    with pytest.raises(YoloError, match="not a Keras model archive"):
        load_model(bad)
    with pytest.raises(YoloError, match="not found"):
        load_model(tmp_path / "missing.keras")
    truncated = tmp_path / "truncated.keras"
    truncated.write_bytes(small[2].read_bytes()[:2000])
    with pytest.raises(YoloError):
        load_model(truncated)


def test_tampered_file_with_lambda_layer_is_refused(tmp_path, small):
    """Someone rewrites config.json to smuggle a Lambda layer (code) into the model file."""
    _, meta, path = small
    hostile = tmp_path / "hostile.keras"
    inputs = keras.Input((64, 64, 3))
    outputs = keras.layers.Lambda(lambda x: x * 2.0)(inputs)
    keras.Model(inputs, outputs).save(hostile)
    with zipfile.ZipFile(hostile, "a") as z:
        z.writestr("yolo_cli.json", meta.to_json())
    with pytest.raises(YoloError, match="Lambda"):
        load_model(hostile)
    result = CliRunner().invoke(cli, ["info", str(hostile)])
    assert result.exit_code == 2
    assert "Lambda" in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


@pytest.mark.filterwarnings("ignore:Duplicate name")
def test_bad_metadata(tmp_path, small):
    path = tmp_path / "meta.keras"
    path.write_bytes(small[2].read_bytes())
    with zipfile.ZipFile(path, "a") as z:
        z.writestr("yolo_cli.json", "{not json")
    with pytest.raises(YoloError):
        read_meta(path)


def test_info_prints_layer_table(small):
    result = CliRunner().invoke(cli, ["info", str(small[2])])
    assert result.exit_code == 0, result.output
    assert "classes (2): cat, dog" in result.output
    assert "20×30" in result.output and "multiply-adds" in result.output


def test_deployable_file_drops_optimizer_state(tmp_path):
    import tensorflow as tf

    model = build_model(2, np.array(ANCHORS), 64, width=0.25)
    model.compile(optimizer=keras.optimizers.Adam())
    x = np.random.default_rng(1).uniform(0, 255, (2, 64, 64, 3)).astype(np.float32)
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(model(x, training=True) ** 2)
    grads = tape.gradient(loss, model.trainable_variables)
    model.optimizer.apply_gradients(zip(grads, model.trainable_variables))
    meta = ModelMeta("yolo", ["cat", "dog"], 64, [Head(32, ANCHORS)])
    full = save_model(model, tmp_path / "full.keras", meta)
    slim = save_model(model, tmp_path / "slim.keras", meta, include_optimizer=False)
    assert slim.stat().st_size < 0.5 * full.stat().st_size
    loaded, got = load_model(slim)
    assert got == meta
    np.testing.assert_allclose(loaded(x).numpy(), model(x).numpy(), atol=1e-5)


# --- several heads, and files of the first format ------------------------------------------


def _legacy_file(tmp_path, model, names, img_size, anchors):
    """A model file as the first format wrote it: one grid, ``anchors`` and no ``heads``."""
    path = tmp_path / "legacy.keras"
    model.save(path)
    raw = {"kind": "yolo", "names": names, "img_size": img_size, "anchors": anchors, "extra": {}}
    with zipfile.ZipFile(path, "a") as z:
        z.writestr("yolo_cli.json", json.dumps(raw))
    return path


def test_first_format_file_reads_as_one_stride_32_head(tmp_path, small):
    model, _, _ = small
    meta = read_meta(_legacy_file(tmp_path, model, ["cat", "dog"], 64, ANCHORS))
    assert meta.heads == [Head(32, ANCHORS)]
    assert (meta.class_activation, meta.resize) == ("softmax", "letterbox")


def numpy_decode(raw, anchors, stride, activation="softmax", scale_xy=1.0):
    """The YOLOv2/v3 decode written out in NumPy: one raw grid ``(S, S, B, 5 + C)`` →
    boxes ``(S·S·B, 4)`` xyxy input px, p_c, class probabilities (order row, col, anchor)."""
    s, _, b, _ = raw.shape
    sig = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    rows, cols = np.meshgrid(np.arange(s), np.arange(s), indexing="ij")
    off = sig(raw[..., 1:3]) * scale_xy - (scale_xy - 1) / 2
    cx = (off[..., 0] + cols[..., None]) * stride
    cy = (off[..., 1] + rows[..., None]) * stride
    w = np.asarray(anchors)[:, 0] * np.exp(raw[..., 3])
    h = np.asarray(anchors)[:, 1] * np.exp(raw[..., 4])
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1).reshape(-1, 4)
    logits = raw[..., 5:].reshape(-1, raw.shape[-1] - 5)
    if activation == "sigmoid":
        probs = sig(logits)
    else:
        e = np.exp(logits - logits.max(-1, keepdims=True))
        probs = e / e.sum(-1, keepdims=True)
    return boxes, sig(raw[..., 0]).reshape(-1), probs


def reference_detections(model, meta, image, conf, nms_iou=0.5, max_det=100):
    """Detections by the NumPy decode above, letterbox by hand, and the numpy NMS and box vote
    (a Detector's default)."""
    from yolo_cli.boxes import clip, letterbox_image
    from yolo_cli.config import DEFAULTS
    from yolo_cli.postprocess import filter_detections

    x, lb = letterbox_image(image, meta.img_size)
    raws = model(x[None].astype(np.float32))
    raws = raws if isinstance(raws, list) else [raws]
    parts = [
        numpy_decode(np.asarray(r)[0], h.anchors, h.stride, meta.class_activation, h.scale_xy)
        for r, h in zip(raws, meta.heads)
    ]
    boxes, p_c, probs = (np.concatenate(p) for p in zip(*parts))
    dets = filter_detections(boxes, p_c, probs, conf, nms_iou, max_det, DEFAULTS.box_vote)
    h, w = image.shape[:2]
    dets.boxes = clip(lb.invert(dets.boxes), w, h)
    return dets


def assert_same(dets, ref):
    """Same detections; boxes of equal score (cells of the uniform letterbox border) may come
    in either order, so both sides are ordered by (score, box)."""
    assert len(dets) == len(ref) > 0
    dets, ref = (
        d.take(np.lexsort((*d.boxes.round(2).T[::-1], -d.scores.round(5)))) for d in (dets, ref)
    )
    np.testing.assert_array_equal(dets.classes, ref.classes)
    np.testing.assert_allclose(dets.scores, ref.scores, atol=1e-5)
    np.testing.assert_allclose(dets.boxes, ref.boxes, atol=0.05)


def test_first_format_file_gives_the_single_grid_detections(tmp_path):
    """A file of the first format, loaded today, gives exactly the detections of the one-grid
    YOLOv2 decode (NumPy above) on a sample photo."""
    import cv2

    from yolo_cli.config import PACKAGE_ROOT
    from yolo_cli.inference import Detector, Thresholds

    keras.utils.set_random_seed(5)
    anchors = [[16.0, 32.0], [56.0, 34.0], [40.0, 107.0], [118.0, 72.0], [236.0, 152.0]]
    model = build_model(3, np.array(anchors), 128, width=0.25)
    path = _legacy_file(tmp_path, model, ["pedestrian", "car", "motorcycle"], 128, anchors)
    detector = Detector.from_file(path, Thresholds(conf=0.05))
    image = cv2.imread(str(PACKAGE_ROOT / "data" / "samples" / "street_1.jpg"))[..., ::-1]
    (dets,) = detector.detect([np.ascontiguousarray(image)])
    assert_same(dets, reference_detections(detector.model, detector.meta, image, 0.05))


def two_head_model(num_classes=3, size=96):
    """A small two-grid network (strides 32 and 16, 2 and 3 anchors), random weights."""
    keras.utils.set_random_seed(3)
    inputs = keras.Input((size, size, 3))
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    x = keras.layers.Conv2D(8, 3, strides=4, padding="same", activation="relu")(x)
    fine = keras.layers.Conv2D(8, 3, strides=4, padding="same", activation="relu")(x)
    coarse = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu")(fine)
    outs = []
    for feat, b, name in [(coarse, 2, "s32"), (fine, 3, "s16")]:
        s = feat.shape[1]
        y = keras.layers.Conv2D(b * (5 + num_classes), 1, name=f"head_{name}")(feat)
        outs.append(keras.layers.Reshape((s, s, b, 5 + num_classes), name=f"grid_{name}")(y))
    return keras.Model(inputs, outs)


@pytest.mark.parametrize(("activation", "scale_xy"), [("softmax", 1.0), ("sigmoid", 2.0)])
def test_two_heads_decode_together(tmp_path, activation, scale_xy):
    from yolo_cli.inference import Detector, Thresholds

    model = two_head_model()
    heads = [
        Head(32, [[40.0, 50.0], [70.0, 30.0]], scale_xy),
        Head(16, [[8, 8], [16, 20], [30, 12]]),
    ]
    meta = ModelMeta("yolo", ["a", "b", "c"], 96, heads, activation, "letterbox")
    path = save_model(model, tmp_path / "two.keras", meta)
    detector = Detector.from_file(path, Thresholds(conf=0.2, max_det=300))
    assert detector.meta == meta
    image = np.random.default_rng(0).integers(0, 255, (120, 90, 3), np.uint8)
    (dets,) = detector.detect([image])
    assert_same(dets, reference_detections(model, meta, image, 0.2, max_det=300))


def test_stretch_resize_maps_boxes_back_per_axis(tmp_path):
    from yolo_cli.boxes import Stretch, resize_image

    image = np.zeros((50, 200, 3), np.uint8)
    x, st = resize_image(image, 100, "stretch")
    assert x.shape == (100, 100, 3) and st == Stretch(0.5, 2.0, 100)
    boxes = np.array([[10, 10, 30, 40]], np.float32)
    np.testing.assert_allclose(st.apply(boxes), [[5, 20, 15, 80]])
    np.testing.assert_allclose(st.invert(st.apply(boxes)), boxes)


# --- metadata that contradicts the network, and hostile archives ------------------------------


def _with_meta(tmp_path, source: Path, raw, name="forged.keras") -> Path:
    """A copy of ``source`` whose yolo_cli.json is replaced by ``raw`` (any JSON value)."""
    path = tmp_path / name
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(path, "w") as dst:
        for info in src.infolist():
            if info.filename != "yolo_cli.json":
                dst.writestr(info, src.read(info))
        dst.writestr("yolo_cli.json", raw if isinstance(raw, str) else json.dumps(raw))
    return path


GOOD = {
    "kind": "yolo",
    "names": ["cat", "dog"],
    "img_size": 64,
    "heads": [{"stride": 32, "anchors": ANCHORS}],
}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"heads": [{"stride": 32, "anchors": [[1]]}]}, "anchors"),
        ({"names": ["cat", "dog", "bird"]}, "output 0 has shape"),
        ({"names": "cat,dog"}, "names"),
        ({"names": ["cat", "cat"]}, "repeat"),
        ({"img_size": 64.5}, "img_size"),
        ({"img_size": "64"}, "img_size"),
        ({"img_size": 128}, "network input"),
        ({"heads": [{"stride": 32, "anchors": ANCHORS}] * 2}, "2 heads"),
        ({"heads": [{"stride": 24, "anchors": ANCHORS}]}, "stride 24"),
        ({"heads": "32"}, "heads"),
        ({"class_activation": "relu"}, "class_activation"),
        ({"resize": 3}, "resize"),
        ({"extra": []}, "extra"),
        ({"surprise": 1}, "unknown fields"),
    ],
)
def test_metadata_that_contradicts_the_network_is_refused(tmp_path, small, change, message):
    path = _with_meta(tmp_path, small[2], {**GOOD, **change})
    with pytest.raises(YoloError, match=message):
        load_model(path)
    image = tmp_path / "a.png"
    import cv2

    cv2.imwrite(str(image), np.zeros((32, 32, 3), np.uint8))
    result = CliRunner().invoke(
        cli, ["detect", str(image), "--model", str(path), "--out", str(tmp_path / "out")]
    )
    assert result.exit_code == 2
    assert len(result.output.strip().splitlines()) == 1 and message.split()[0] in result.output
    assert "Traceback" not in result.output and not (tmp_path / "out").exists()


def test_foreign_keras_model_with_forged_metadata_is_refused(tmp_path):
    foreign = tmp_path / "foreign.keras"
    keras.Sequential([keras.Input((64, 64, 3)), keras.layers.Conv2D(2, 3)]).save(foreign)
    path = _with_meta(tmp_path, foreign, GOOD)
    with pytest.raises(YoloError, match="output 0 has shape"):
        load_model(path)


def _set_declared_size(path: Path, name: str, size: int) -> None:
    """Rewrite the uncompressed size a zip archive declares for ``name`` (local header and
    central directory), as a hostile file would."""
    data = bytearray(path.read_bytes())
    encoded = name.encode()
    for sig, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        start = 0
        while (i := data.find(sig, start)) >= 0:
            name_at = i + (30 if sig == b"PK\x03\x04" else 46)
            if data[name_at : name_at + len(encoded)] == encoded:
                data[i + offset : i + offset + 4] = size.to_bytes(4, "little")
            start = i + 4
    path.write_bytes(bytes(data))


def _peak_memory(fn):
    import tracemalloc

    tracemalloc.start()
    try:
        with pytest.raises(YoloError) as info:
            fn()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return str(info.value), peak


@pytest.mark.parametrize("entry", ["yolo_cli.json", "config.json", "model.weights.h5"])
def test_entry_declaring_gigabytes_is_refused_cheaply(tmp_path, small, entry):
    path = tmp_path / "huge.keras"
    path.write_bytes(small[2].read_bytes())
    _set_declared_size(path, entry, 3_000_000_000)
    message, peak = _peak_memory(lambda: load_model(path))
    assert "3,000,000,000" in message and str(path) in message
    assert peak < 100 * 2**20


def test_entry_larger_than_it_declares_is_refused(tmp_path):
    """A 1 GB config.json (compressed to ~1 MB) that declares 1 KB: caught while streaming."""
    path = tmp_path / "liar.keras"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("yolo_cli.json", json.dumps(GOOD))
        with z.open("config.json", "w", force_zip64=True) as f:
            block = b" " * (1 << 20)
            for _ in range(1024):
                f.write(block)
    _set_declared_size(path, "config.json", 1000)
    message, peak = _peak_memory(lambda: read_meta(path))
    assert "config.json" in message and peak < 100 * 2**20


def test_config_declaring_a_giant_layer_is_refused_before_keras_builds_it(tmp_path, small):
    path = tmp_path / "giant.keras"
    with zipfile.ZipFile(small[2]) as src, zipfile.ZipFile(path, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == "config.json":
                config = json.loads(data)
                config["config"]["layers"][2]["config"]["filters"] = 10**9
                data = json.dumps(config).encode()
            dst.writestr(info, data)
    message, peak = _peak_memory(lambda: load_model(path))
    assert "filters=1000000000" in message and peak < 100 * 2**20
