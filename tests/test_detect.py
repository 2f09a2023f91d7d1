"""``yolo detect`` end to end, with a model whose one detection is known exactly.

The test model is the real network with hand-set weights: every convolution passes the red
channel of its centre tap through (BatchNorm set to identity), so after the backbone each
grid cell holds the brightest red value inside it (max pooling). The head turns that into
p_c = sigmoid(20·v − 15) for anchor 0 and class "car": only a cell holding a white patch
(v = 1) clears the 0.6 threshold; black (v = 0) and the letterbox's grey border (v = 0.45)
do not. The decoded box is then the cell's centre with anchor 0's size, in model-input
pixels, and the test maps it back to the original image by hand.
"""

import json
import struct
import subprocess
import sys
from pathlib import Path

import cv2
import keras
import numpy as np
import pytest
from click.testing import CliRunner

from yolo_cli import config
from yolo_cli.cli import cli
from yolo_cli.detect import resolve_sources
from yolo_cli.draw import class_colour, draw_detections
from yolo_cli.model import build_model
from yolo_cli.modelfile import Head, ModelMeta, save_model
from yolo_cli.postprocess import Detections

NAMES = ["pedestrian", "car", "motorcycle"]
ANCHORS = [[20.0, 24.0], [60.0, 50.0]]
SIZE = 128
CAR = 1
SCORE = 1 / (1 + np.exp(-5.0)) * np.exp(10) / (np.exp(10) + 2)  # p_c · P(car)


def _one_box_model(img_size: int = SIZE):
    model = build_model(len(NAMES), np.array(ANCHORS), img_size, width=0.25)
    red_in_block7 = model.get_layer("passthrough_fold").output.shape[-1]  # after the passthrough
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D) and layer.name != "head":
            kernel = np.zeros(layer.kernel.shape, np.float32)
            c = kernel.shape[0] // 2
            if layer.name == "block7_conv":
                kernel[c, c, red_in_block7, 0] = 1
            elif layer.name != "passthrough_conv":
                kernel[c, c, 0, 0] = 1
            layer.set_weights([kernel])
        elif isinstance(layer, keras.layers.BatchNormalization):
            n = layer.gamma.shape[0]
            ones, zeros = np.ones(n), np.zeros(n)
            layer.set_weights([ones, zeros, zeros, np.full(n, 1 - layer.epsilon)])
    head = model.get_layer("head")
    kernel = np.zeros(head.kernel.shape, np.float32)
    kernel[0, 0, 0, 0] = 20  # anchor 0's p_c logit from the red channel
    bias = np.zeros((len(ANCHORS), 5 + len(NAMES)), np.float32)
    bias[:, 0] = -30
    bias[0, 0] = -15
    bias[0, 5 + CAR] = 10
    head.set_weights([kernel, bias.reshape(-1)])
    return model


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    meta = ModelMeta("yolo", NAMES, SIZE, [Head(32, ANCHORS)])
    return save_model(_one_box_model(), tmp_path_factory.mktemp("m") / "one.keras", meta)


@pytest.fixture(scope="module")
def resizable_model_file(tmp_path_factory):
    meta = ModelMeta("yolo", NAMES, SIZE, [Head(32, ANCHORS)], extra={"config": {"width": 0.25}})
    return save_model(_one_box_model(), tmp_path_factory.mktemp("m") / "sized.keras", meta)


def scene(width: int, height: int, row: int, col: int, size: int = SIZE):
    """A black ``width × height`` RGB image with a white patch in grid cell (row, col) of the
    letterboxed ``size`` input, and the xyxy box (original pixels) the model must find."""
    scale = size / max(width, height)
    pad_x = (size - round(width * scale)) // 2
    pad_y = (size - round(height * scale)) // 2

    def to_original(x, y):
        return (x - pad_x) / scale, (y - pad_y) / scale

    image = np.zeros((height, width, 3), np.uint8)
    x1, y1 = to_original(col * 32 + 8, row * 32 + 8)
    x2, y2 = to_original(col * 32 + 24, row * 32 + 24)
    image[int(np.ceil(y1)) : int(y2), int(np.ceil(x1)) : int(x2)] = 255
    cx, cy = (col + 0.5) * 32, (row + 0.5) * 32
    (aw, ah) = ANCHORS[0]
    box = [*to_original(cx - aw / 2, cy - ah / 2), *to_original(cx + aw / 2, cy + ah / 2)]
    return image, np.array(box)


LANDSCAPE = (200, 100, 1, 2)  # width, height, cell row, cell col
PORTRAIT = (90, 180, 2, 1)


def write_rgb(path: Path, image: np.ndarray, *params) -> Path:
    assert cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR), list(params))
    return path


def jpeg_with_orientation(image: np.ndarray, orientation: int) -> bytes:
    """JPEG bytes of an RGB image with an EXIF APP1 segment holding only the Orientation tag."""
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    assert ok
    data = data.tobytes()
    ifd = struct.pack(">H", 1) + struct.pack(">HHIHH", 0x0112, 3, 1, orientation, 0)
    tiff = b"MM\x00\x2a" + struct.pack(">I", 8) + ifd + struct.pack(">I", 0)
    payload = b"Exif\x00\x00" + tiff
    app1 = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    return data[:2] + app1 + data[2:]  # right after SOI


def detect(*args, **kwargs):
    result = CliRunner().invoke(cli, ["detect", *map(str, args)], **kwargs)
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def records(result) -> list[dict]:
    return [json.loads(line) for line in result.stdout.splitlines()]


def problem_lines(result) -> list[str]:
    """stderr lines other than the final summary."""
    return result.stderr.strip().splitlines()[:-1]


@pytest.mark.parametrize("shape", [LANDSCAPE, PORTRAIT], ids=["landscape", "portrait"])
def test_box_reaches_json_txt_and_image_in_original_pixels(tmp_path, model_file, shape):
    w, h, row, col = shape
    image, box = scene(w, h, row, col)
    src = write_rgb(tmp_path / "scene.png", image)
    out = tmp_path / "out"
    result = detect(src, "--model", model_file, "--json", "--save-txt", "--save-conf", "--out", out)
    assert result.exit_code == 0, result.output

    (record,) = records(result)
    assert (record["file"], record["width"], record["height"]) == (str(src), w, h)
    (det,) = record["detections"]
    assert det["class"] == "car"
    np.testing.assert_allclose(det["xyxy"], box, atol=2e-3)
    assert det["score"] == pytest.approx(SCORE, abs=1e-5)

    fields = (out / "labels" / "scene.txt").read_text().split()
    assert fields[0] == str(CAR)
    cx, cy = (box[0] + box[2]) / 2 / w, (box[1] + box[3]) / 2 / h
    bw, bh = (box[2] - box[0]) / w, (box[3] - box[1]) / h
    np.testing.assert_allclose([float(v) for v in fields[1:5]], [cx, cy, bw, bh], atol=2e-6)
    assert float(fields[5]) == pytest.approx(SCORE, abs=1e-5)

    annotated = cv2.cvtColor(cv2.imread(str(out / "scene.png")), cv2.COLOR_BGR2RGB)
    assert annotated.shape == image.shape
    x1, y1, x2, y2 = np.round(box).astype(int)
    car = class_colour(CAR)
    assert tuple(annotated[y2, (x1 + x2) // 2]) == car  # bottom edge
    assert tuple(annotated[y2 - 1, x1]) == car  # left edge, below the label
    assert tuple(annotated[h - 1, 0]) == (0, 0, 0)  # far from the box: untouched
    assert "1 image; 1 car;" in result.stderr and str(out) in result.stderr


def test_bad_and_odd_inputs_in_a_folder(tmp_path, model_file):
    w, h, row, col = LANDSCAPE
    image, box = scene(w, h, row, col)
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    write_rgb(folder / "good.png", image)
    write_rgb(folder / "sub" / "deeper.jpg", image)
    assert cv2.imwrite(str(folder / "gray.png"), cv2.cvtColor(image, cv2.COLOR_RGB2GRAY))
    rgba = np.dstack([image, np.full((h, w), 255, np.uint8)])
    assert cv2.imwrite(str(folder / "rgba.png"), rgba)
    assert cv2.imwrite(str(folder / "deep.png"), image.astype(np.uint16) * 257)
    # stored rotated a quarter turn anticlockwise; EXIF orientation 6 says "turn it clockwise"
    stored = cv2.rotate(image, cv2.ROTATE_90_COUNTERCLOCKWISE)
    (folder / "rotated.jpg").write_bytes(jpeg_with_orientation(stored, 6))
    big, big_box = scene(4000, 3000, 2, 2)
    write_rgb(folder / "large.jpg", big, cv2.IMWRITE_JPEG_QUALITY, 80)
    (folder / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg" * 10)
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "notes.txt").write_text("not an image")

    out = tmp_path / "out"
    result = detect(folder, "--model", model_file, "--json", "--out", out)

    assert result.exit_code == 0, result.output
    assert problem_lines(result) == [
        f"{folder / 'corrupt.jpg'}: not a readable image (corrupt or unsupported format)",
        f"{folder / 'empty.jpg'}: empty file",
    ]
    assert result.stderr.splitlines()[-1].startswith("7 images, 2 skipped; 7 car;")
    by_name = {Path(r["file"]).name: r for r in records(result)}
    assert sorted(by_name) == sorted(
        ["good.png", "deeper.jpg", "gray.png", "rgba.png", "deep.png", "rotated.jpg", "large.jpg"]
    )
    for name, r in by_name.items():
        expected = big_box if name == "large.jpg" else box
        assert (r["width"], r["height"]) == ((4000, 3000) if name == "large.jpg" else (w, h))
        (det,) = r["detections"]
        np.testing.assert_allclose(det["xyxy"], expected, atol=2e-3, err_msg=name)
    assert (out / "sub" / "deeper.jpg").is_file()
    assert cv2.imread(str(out / "rotated.jpg")).shape == (h, w, 3)  # saved as displayed
    assert not (out / "notes.txt").exists() and not (out / "corrupt.jpg").exists()


def test_nothing_readable_exits_2(tmp_path, model_file):
    (tmp_path / "broken.mp4").write_bytes(bytes(range(256)) * 20)
    (tmp_path / "corrupt.jpg").write_bytes(b"garbage")
    (tmp_path / "empty.png").write_bytes(b"")
    missing = tmp_path / "missing.jpg"
    result = detect(tmp_path, missing, "--model", model_file, "--out", tmp_path / "out")
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        f"{missing}: no such file or folder",
        f"{tmp_path / 'broken.mp4'}: cannot open video",
        f"{tmp_path / 'corrupt.jpg'}: not a readable image (corrupt or unsupported format)",
        f"{tmp_path / 'empty.png'}: empty file",
        "error: no input could be processed (4 skipped)",
    ]
    assert not (tmp_path / "out").exists()


def test_missing_sources_only_exit_2_before_loading(tmp_path, model_file):
    result = detect(tmp_path / "nope.jpg", tmp_path / "none*.png", "--model", model_file)
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        f"{tmp_path / 'nope.jpg'}: no such file or folder",
        f"{tmp_path / 'none*.png'}: no files match",
        "error: nothing to detect on: no image or video among the sources",
    ]


def test_glob_missing_file_and_default_run_folders(tmp_path, model_file, monkeypatch):
    monkeypatch.chdir(tmp_path)
    image, _ = scene(*LANDSCAPE)
    for name in ("a.png", "b.png", "c.jpg"):
        write_rgb(tmp_path / name, image)
    result = detect("*.png", "missing.png", "--model", model_file)
    assert result.exit_code == 0, result.output
    assert problem_lines(result) == ["missing.png: no such file or folder"]
    assert sorted(p.name for p in Path("runs/detect/exp").iterdir()) == ["a.png", "b.png"]
    assert "results in runs/detect/exp" in result.stderr
    again = detect("c.jpg", "--model", model_file, "--save-txt", "--no-save")
    assert again.exit_code == 0, again.output
    exp2 = Path("runs/detect/exp2")
    written = sorted(p.relative_to(exp2).as_posix() for p in exp2.rglob("*"))
    assert written == ["labels", "labels/c.txt"]


def test_json_only_without_saving_writes_nothing(tmp_path, model_file, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_rgb(tmp_path / "a.png", scene(*LANDSCAPE)[0])
    result = detect("a.png", "--model", model_file, "--json", "--no-save")
    assert result.exit_code == 0, result.output
    assert len(records(result)) == 1
    assert not Path("runs").exists()
    assert result.stderr.splitlines()[-1].endswith("nothing saved")


def _write_video(path: Path, frames: int, image: np.ndarray, fps: float = 10.0) -> Path:
    h, w = image.shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    for _ in range(frames):
        writer.write(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def _decoded_frames(path: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    return frames


@pytest.mark.parametrize("every", [1, 2])
def test_video_is_annotated_frame_by_frame(tmp_path, model_file, every):
    image, box = scene(*LANDSCAPE)
    clip = _write_video(tmp_path / "clip.avi", 10, image)
    out = tmp_path / "out"
    result = detect(
        clip, "--model", model_file, "--every", every, "--json", "--save-txt", "--out", out
    )
    assert result.exit_code == 0, result.output
    frames = _decoded_frames(out / "clip.mp4")
    assert len(frames) == 10 // every
    assert frames[0].shape == image.shape
    got = records(result)
    assert [r["frame"] for r in got] == list(range(0, 10, every))
    for r in got:
        np.testing.assert_allclose(r["detections"][0]["xyxy"], box, atol=2e-3)
    labels = sorted(p.name for p in (out / "labels").iterdir())
    assert labels == sorted(f"clip_{i}.txt" for i in range(0, 10, every))
    cap = cv2.VideoCapture(str(out / "clip.mp4"))
    assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(10 / every, rel=1e-3)
    cap.release()
    assert f"0 images, 1 video ({10 // every} frames)" in result.stderr


def test_classes_filter(tmp_path, model_file):
    src = write_rgb(tmp_path / "a.png", scene(*LANDSCAPE)[0])
    common = [src, "--model", model_file, "--json", "--no-save"]
    kept = detect(*common, "--classes", "pedestrian, car")
    assert [d["class"] for d in records(kept)[0]["detections"]] == ["car"]
    dropped = detect(*common, "--classes", "pedestrian")
    assert records(dropped)[0]["detections"] == []
    assert "no detections" in dropped.stderr
    unknown = detect(*common, "--classes", "car,bus")
    assert unknown.exit_code == 2
    assert unknown.stderr.strip().splitlines() == [
        f"error: {model_file}: no class 'bus'; this model's classes: pedestrian, car, motorcycle"
    ]


def test_missing_default_model_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(config, "MODELS_DIR", tmp_path / "models")
    default = tmp_path / "models" / config.SHIPPED_MODELS[config.DETECT_MODEL]
    write_rgb(tmp_path / "a.png", scene(*LANDSCAPE)[0])
    result = detect(tmp_path / "a.png")
    assert result.exit_code == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(
        f"error: {default}: the shipped model {config.DETECT_MODEL!r} is missing"
    )


def test_corrupt_model_file_is_one_line(tmp_path):
    bad = tmp_path / "bad.keras"
    bad.write_bytes(b"PK\x03\x04 not a zip at all")
    write_rgb(tmp_path / "a.png", scene(*LANDSCAPE)[0])
    result = detect(tmp_path / "a.png", "--model", bad)
    assert result.exit_code == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"error: {bad}: ")


def test_img_size_rebuilds_the_network_when_the_model_says_how(
    tmp_path, model_file, resizable_model_file
):
    w, h, row, col = PORTRAIT
    image, box = scene(w, h, row + 2, col + 2, size=256)  # the same weights at an 8×8 grid
    src = write_rgb(tmp_path / "a.png", image)
    result = detect(src, "--model", resizable_model_file, "--img-size", 256, "--json", "--no-save")
    assert result.exit_code == 0, result.output
    (det,) = records(result)[0]["detections"]
    np.testing.assert_allclose(det["xyxy"], box, atol=2e-3)

    refused = detect(src, "--model", model_file, "--img-size", 256, "--no-save")
    assert refused.exit_code == 2
    assert "--img-size 256 is unsupported by this model (input 128)" in refused.stderr
    odd = detect(src, "--model", resizable_model_file, "--img-size", 100, "--no-save")
    assert odd.exit_code == 2 and "multiples of 32" in odd.stderr


def test_resolve_sources_names_and_order(tmp_path):
    for rel in ("x/b.jpg", "x/a.PNG", "x/deep/c.png", "x/skip.txt", "y/a.PNG", "y/v.avi"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    explicit = tmp_path / "x" / "skip.txt"
    sources, problems = resolve_sources(
        [str(tmp_path / "x"), str(tmp_path / "y"), str(tmp_path / "x" / "b.jpg"), str(explicit)]
    )
    assert problems == []
    assert [(s.path.relative_to(tmp_path).as_posix(), s.name, s.video) for s in sources] == [
        ("x/a.PNG", "a.PNG", False),
        ("x/b.jpg", "b.jpg", False),
        ("x/deep/c.png", "deep/c.png", False),
        ("y/a.PNG", "a_2.PNG", False),
        ("y/v.avi", "v.mp4", True),
        ("x/skip.txt", "skip.txt", False),  # named explicitly: taken, reported if unreadable
    ]


def test_draw_colours_labels_and_copy():
    image = np.full((160, 200, 3), 40, np.uint8)
    dets = Detections(
        np.array([[10, 0, 60, 40], [100, 80, 180, 150]], np.float32),
        np.array([0.9, 0.7], np.float32),
        np.array([0, 2], np.int32),
    )
    out = draw_detections(image, dets, NAMES)
    assert (image == 40).all()  # the input is not drawn on
    assert tuple(out[40, 35]) == class_colour(0)  # bottom edge of box 0
    assert tuple(out[150, 140]) == class_colour(2)  # bottom edge of box 1
    assert class_colour(0) != class_colour(2)
    assert class_colour(2) == class_colour(2 + 20)  # the palette repeats, stable per id
    # box 0 touches the top: its label goes inside, just under the top edge, not off-image
    assert (out[1:15, 12:60] != 40).any(axis=-1).all()
    assert (draw_detections(image, Detections.empty(), NAMES) == image).all()


def test_json_lines_alone_on_stdout_of_the_real_command(tmp_path, model_file):
    for name in ("a.png", "b.png"):
        write_rgb(tmp_path / name, scene(*LANDSCAPE)[0])
    (tmp_path / "c.png").write_bytes(b"")
    yolo = Path(sys.executable).with_name("yolo")
    done = subprocess.run(
        [yolo, "detect", tmp_path, "--model", model_file, "--json", "--no-save"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    got = [json.loads(line) for line in done.stdout.splitlines()]
    assert [Path(r["file"]).name for r in got] == ["a.png", "b.png"]
    assert f"{tmp_path / 'c.png'}: empty file" in done.stderr
