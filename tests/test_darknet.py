"""``yolo import``: a Darknet cfg + weights becomes a model file whose raw heads equal an
independent NumPy forward pass (tests/darknet_numpy.py) of the same cfg and weights."""

from __future__ import annotations

import cv2
import keras
import numpy as np
import pytest
from click.testing import CliRunner
from darknet_numpy import RandomWeights, file_reader, forward, to_project_layout
from shared_data import DARKNET_PHOTOS, YOLO_FASTEST, YOLO_FASTEST_MODELS, needs_yolo_fastest

from yolo_cli.cli import cli
from yolo_cli.darknet import head_channel_order, import_darknet
from yolo_cli.modelfile import load_model

TOLERANCE = 1e-4  # float32 Keras vs float64 NumPy, raw head values of order 10


def _heads(model, image: np.ndarray) -> list[np.ndarray]:
    """Raw head outputs for one ``(H, W, 3)`` RGB 0..255 image, batch axis dropped."""
    out = model(image[None].astype(np.float32), training=False)
    return [np.asarray(o)[0] for o in (out if isinstance(out, list | tuple) else [out])]


def _max_difference(model, image, oracle_heads) -> float:
    keras_heads = _heads(model, image)
    assert len(keras_heads) == len(oracle_heads)
    worst = 0.0
    for got, (raw, anchors, classes) in zip(keras_heads, oracle_heads):
        want = to_project_layout(raw, anchors, classes)
        assert got.shape == want.shape
        worst = max(worst, float(np.abs(got - want).max()))
    return worst


def _photo(size: int) -> np.ndarray:
    """dog.jpg as ``(size, size, 3)`` float32 RGB 0..255 (a plain resize, as Darknet)."""
    bgr = cv2.imread(str(DARKNET_PHOTOS / "dog.jpg"))
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    return cv2.resize(rgb, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32)


@needs_yolo_fastest
@pytest.mark.parametrize("name", YOLO_FASTEST_MODELS)
def test_yolo_fastest_equals_the_numpy_forward_pass(name, record_property):
    cfg, weights = YOLO_FASTEST / f"{name}.cfg", YOLO_FASTEST / f"{name}.weights"
    model, meta = import_darknet(cfg, weights, YOLO_FASTEST / "coco.names")
    image = _photo(meta.img_size)
    read = file_reader(weights)
    oracle = forward(cfg.read_text(), image / 255.0, read)
    assert read.left() == 0

    difference = _max_difference(model, image, oracle)
    record_property("max_abs_difference", difference)
    print(f"{name}: max |keras - numpy| = {difference:.2e}")
    assert difference < TOLERANCE

    assert meta.names[:3] == ["person", "bicycle", "car"] and meta.num_classes == 80
    assert meta.img_size == 320 and meta.resize == "stretch"
    assert meta.class_activation == "sigmoid"
    assert [h.stride for h in meta.heads] == [32, 16]
    assert meta.heads[0].anchors == ((115, 73), (119, 199), (242, 238))
    assert meta.heads[1].anchors == ((12, 18), (37, 49), (52, 132))
    assert meta.extra["darknet"]["weights"] == weights.name
    assert meta.extra["darknet"]["seen"] > 0
    assert model.count_params() == (weights.stat().st_size - 20) // 4


@needs_yolo_fastest
def test_import_command_writes_a_model_that_loads_in_safe_mode(tmp_path):
    name = YOLO_FASTEST_MODELS[0]
    cfg, weights = YOLO_FASTEST / f"{name}.cfg", YOLO_FASTEST / f"{name}.weights"
    runner = CliRunner()
    with runner.isolated_filesystem(temp_dir=tmp_path) as here:
        args = ["import", str(cfg), str(weights), "--names", str(YOLO_FASTEST / "coco.names")]
        result = runner.invoke(cli, args)
        assert result.exit_code == 0, result.output
        written = tmp_path / here / f"{name}.keras"
        assert written.is_file()
    line = result.output.strip()
    assert "\n" not in line
    for part in ("80 classes", "stride 32 anchors 115×73", "stride 16", "320×320", "346,062"):
        assert part in line, line

    image = _photo(320)
    fresh, _ = import_darknet(cfg, weights)
    safe = keras.saving.load_model(written, safe_mode=True)
    for a, b in zip(_heads(fresh, image), _heads(safe, image)):
        np.testing.assert_array_equal(a, b)
    loaded, meta = load_model(written)
    assert [h.stride for h in meta.heads] == [32, 16] and meta.names[16] == "dog"
    assert not any(type(layer).__name__ == "Lambda" for layer in loaded.layers)


# Small networks with seeded random weights, each layer type and padding rule checked
# against the NumPy oracle.
POOLS = """
[net]
width=96
height=96
channels=3
[convolutional]
filters=6
size=2
stride=1
pad=0
activation=leaky
batch_normalize=1
# 95×95
[maxpool]
size=3
stride=2
# 48×48
[convolutional]
filters=6
size=2
stride=1
pad=1
activation=linear
# 49×49: an even size pads size//2 on both sides
[maxpool]
size=2
stride=2
padding=0
# 24×24 (Keras "same" would give 25)
[maxpool]
size=3
stride=2
# 12×12: Darknet pads 1 before, Keras "same" 1 after
[convolutional]
filters=8
size=3
stride=1
padding=2
activation=leaky
# 14×14
[maxpool]
size=5
stride=2
# 7×7: Darknet pads 2 before, Keras "same" 1
[maxpool]
size=4
stride=1
[maxpool]
size=5
stride=1
[convolutional]
filters=8
size=3
stride=2
pad=1
batch_normalize=1
activation=leaky
# 4×4: stride-2 padding on both sides of an odd input
[convolutional]
filters=14
size=1
activation=linear
[yolo]
mask=0,1
anchors=10,14, 23,27
classes=2
num=2
"""

GROUPS = """
[net]
width=48
height=48
channels=3
[convolutional]
filters=16
size=3
stride=2
pad=1
batch_normalize=1
activation=leaky
[route]
layers=-1
groups=2
group_id=1
[convolutional]
filters=8
size=3
stride=1
pad=1
groups=2
batch_normalize=1
activation=mish
[convolutional]
filters=16
size=3
stride=1
pad=1
groups=8
batch_normalize=1
activation=leaky
[route]
layers = -1, -2
[route]
layers=-1,-4
groups=4
group_id=3
[convolutional]
filters=32
size=3
stride=2
pad=1
groups=8
activation=swish
[convolutional]
filters=24
size=1
stride=1
activation=linear
[yolo]
mask=1,2,3
anchors=4,5, 8,9, 12,20, 30,32
classes=3
num=4
scale_x_y=1.05
"""

SHORTCUTS = """
[net]
width=32
height=32
channels=3
momentum=0.9
[convolutional]
filters=8
size=3
stride=1
pad=1
batch_normalize=1
activation=logistic
[convolutional]
filters=8
size=3
stride=2
pad=1
batch_normalize=1
activation=relu
[convolutional]
filters=8
size=1
batch_normalize=1
activation=mish
[dropout]
probability=.2
[shortcut]
from=-3
activation=leaky
[convolutional]
filters=8
size=3
stride=2
pad=1
batch_normalize=1
activation=leaky
[convolutional]
size=1
stride=1
pad=1
filters=18
activation=linear
[yolo]
mask = 3,4,5
anchors = 2,3, 4,5, 6,7, 8,9, 10,11, 12,13
classes=1
num=6
jitter=.3
ignore_thresh = .7
[route]
layers = -3
[upsample]
stride=2
[route]
layers = -1, 4
[convolutional]
size=1
filters=18
activation=linear
[yolo]
mask = 0,1,2
anchors = 2,3, 4,5, 6,7, 8,9, 10,11, 12,13
classes=1
num=6
"""

REGION = """
[net]
width=64
height=64
channels=3
[convolutional]
filters=8
size=3
stride=1
pad=1
batch_normalize=1
activation=leaky
[maxpool]
size=2
stride=2
[convolutional]
filters=16
size=3
stride=1
pad=1
batch_normalize=1
activation=leaky
[maxpool]
size=2
stride=2
[maxpool]
size=2
stride=2
[maxpool]
size=2
stride=1
[convolutional]
filters=16
size=1
activation=linear
[region]
anchors = 1.08,1.19, 3.42,4.41
classes=3
num=2
coords=4
softmax=1
bias_match=1
"""

SYNTHETIC = {"pools": POOLS, "groups": GROUPS, "shortcuts": SHORTCUTS, "region": REGION}


def _synthetic(tmp_path, text: str, seed: int = 0):
    """Write ``text`` and seeded random weights for it; returns cfg, weights, image, oracle."""
    cfg, weights = tmp_path / "net.cfg", tmp_path / "net.weights"
    cfg.write_text(text)
    size = int(text.split("width=")[1].split()[0])
    image = np.random.default_rng(seed).uniform(0, 255, (size, size, 3)).astype(np.float32)
    random_weights = RandomWeights(seed)
    oracle = forward(text, image / 255.0, random_weights)
    random_weights.write(weights)
    return cfg, weights, image, oracle


@pytest.mark.parametrize("name", SYNTHETIC)
def test_synthetic_network_equals_the_numpy_forward_pass(tmp_path, name):
    cfg, weights, image, oracle = _synthetic(tmp_path, SYNTHETIC[name])
    model, meta = import_darknet(cfg, weights)
    assert _max_difference(model, image, oracle) < TOLERANCE
    assert meta.extra["darknet"] == {"cfg": "net.cfg", "weights": "net.weights", "seen": 12345}


def test_pools_take_both_padding_paths(tmp_path):
    cfg, weights, _, _ = _synthetic(tmp_path, POOLS)
    model, _ = import_darknet(cfg, weights)
    pools = [layer for layer in model.layers if isinstance(layer, keras.layers.MaxPooling2D)]
    assert {layer.padding for layer in pools} == {"same", "valid"}
    assert any(layer.name.endswith("_rows_before_repeat") for layer in model.layers)


def test_region_head_meta_has_softmax_and_anchors_in_pixels(tmp_path):
    cfg, weights, _, _ = _synthetic(tmp_path, REGION)
    _, meta = import_darknet(cfg, weights)
    assert meta.class_activation == "softmax" and meta.names == ["class0", "class1", "class2"]
    assert [h.stride for h in meta.heads] == [8]
    np.testing.assert_allclose(meta.heads[0].anchors, [[1.08 * 8, 1.19 * 8], [3.42 * 8, 4.41 * 8]])


def test_yolo_heads_keep_mask_order_and_scale(tmp_path):
    cfg, weights, _, _ = _synthetic(tmp_path, SHORTCUTS)
    _, meta = import_darknet(cfg, weights)
    assert [h.stride for h in meta.heads] == [4, 2]
    assert meta.heads[0].anchors == ((8, 9), (10, 11), (12, 13))
    cfg, weights, _, _ = _synthetic(tmp_path, GROUPS)
    _, meta = import_darknet(cfg, weights)
    assert meta.heads[0].scale_xy == pytest.approx(1.05)


def test_head_channel_order_moves_objectness_first():
    order = head_channel_order(anchors=2, classes=2)
    assert order.tolist() == [4, 0, 1, 2, 3, 5, 6, 11, 7, 8, 9, 10, 12, 13]


def _line_of(text: str, fragment: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if fragment in line)


def _run_import(cfg, weights, tmp_path):
    result = CliRunner().invoke(
        cli, ["import", str(cfg), str(weights), "--out", str(tmp_path / "m.keras")]
    )
    message = result.output.strip()
    assert result.exit_code == 2, result.output
    assert "\n" not in message and "Traceback" not in message, message
    assert message.startswith("error: ")
    assert not (tmp_path / "m.keras").exists()
    return message


CFG_ERRORS = {
    "unsupported section": (
        ("[upsample]", "[crop]\ncrop_width=4\n[upsample]"),
        "[crop]",
        "[crop] is not supported",
    ),
    "malformed line": (("filters=18\nactivation", "filters 18\nactivation"), "filters 18", "malformed line"),
    "bad layer index": (("layers = -1, 4", "layers = -1, -40"), "layers = -1, -40", "outside 0.."),
    "layer after the end": (("layers = -1, 4", "layers = -1, 12"), "layers = -1, 12", "outside 0.."),
    "unknown key": (("momentum=0.9", "momentum=0.9\n[convolutional]\ndilation=2"), "dilation", "dilation= is not supported"),
    "groups": (("filters=8\nsize=1\n", "filters=8\nsize=1\ngroups=3\n"), "groups=3", "groups=3 does not divide 8"),
    "non-square": (("height=32", "height=64"), "height=64", "only square inputs"),
    "activation": (("activation=relu", "activation=gelu"), "activation=gelu", "activation=gelu is not supported"),
    "filters vs classes": (("filters=18\nactivation=linear\n[yolo]", "filters=17\nactivation=linear\n[yolo]"), "[yolo]", "need 18"),
}  # fmt: skip


@pytest.mark.parametrize("case", CFG_ERRORS)
def test_cfg_errors_name_file_section_and_line(tmp_path, case):
    (old, new), at, problem = CFG_ERRORS[case]
    _, weights, _, _ = _synthetic(tmp_path, SHORTCUTS)
    assert old in SHORTCUTS
    text = SHORTCUTS.replace(old, new, 1)
    cfg = tmp_path / "bad.cfg"
    cfg.write_text(text)
    message = _run_import(cfg, weights, tmp_path)
    line = _line_of(text, at) if case != "filters vs classes" else _line_of(text, "[yolo]")
    assert f"{cfg}:{line}: " in message, message
    assert problem in message
    assert message.split(f":{line}: ", 1)[1].startswith("[")


@pytest.mark.parametrize("change,problem", [(-4, "too short"), (8, "8 bytes left over")])
def test_weights_of_the_wrong_length_are_refused(tmp_path, change, problem):
    cfg, weights, _, _ = _synthetic(tmp_path, SHORTCUTS)
    data = weights.read_bytes()
    weights.write_bytes(data[:change] if change < 0 else data + bytes(change))
    message = _run_import(cfg, weights, tmp_path)
    assert str(weights) in message and problem in message
    assert "[convolutional]" in message
    last_conv = max(
        i for i, line in enumerate(SHORTCUTS.splitlines(), 1) if line == "[convolutional]"
    )
    assert f"line {last_conv}" in message or f"{cfg}:{last_conv}" in message, message


def test_missing_files_are_one_line(tmp_path):
    cfg, weights, _, _ = _synthetic(tmp_path, SHORTCUTS)
    assert "weights file not found" in _run_import(cfg, tmp_path / "none.weights", tmp_path)
    assert "cfg file not found" in _run_import(tmp_path / "none.cfg", weights, tmp_path)
    names = tmp_path / "two.names"
    names.write_text("a\nb\n")
    result = CliRunner().invoke(cli, ["import", str(cfg), str(weights), "--names", str(names)])
    assert result.exit_code == 2
    assert result.output.strip() == f"error: {names}: 2 names, but the cfg says classes=1"
