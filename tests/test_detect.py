"""``yolo detect`` end to end, with a model whose one detection is known exactly
(:mod:`detect_helpers`)."""

import json
import struct
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from detect_helpers import (
    ANCHORS,
    CAR,
    LANDSCAPE,
    NAMES,
    PORTRAIT,
    SCORE,
    SIZE,
    decoded_frames,
    detect,
    model_file,
    one_box_model,
    problem_lines,
    records,
    scene,
    write_rgb,
    write_video,
)

from yolo_cli import config
from yolo_cli.draw import class_colour, draw_detections
from yolo_cli.modelfile import Head, ModelMeta, save_model
from yolo_cli.postprocess import Detections
from yolo_cli.sources import IMAGE, VIDEO, resolve_sources

__all__ = ["model_file"]  # a fixture


@pytest.fixture(scope="module")
def resizable_model_file(tmp_path_factory):
    meta = ModelMeta("yolo", NAMES, SIZE, [Head(32, ANCHORS)], extra={"config": {"width": 0.25}})
    return save_model(one_box_model(), tmp_path_factory.mktemp("m") / "sized.keras", meta)


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


@pytest.mark.parametrize("every", [1, 2])
def test_video_is_annotated_frame_by_frame(tmp_path, model_file, every):
    image, box = scene(*LANDSCAPE)
    clip = write_video(tmp_path / "clip.avi", 10, image)
    out = tmp_path / "out"
    result = detect(
        clip, "--model", model_file, "--every", every, "--json", "--save-txt", "--out", out
    )
    assert result.exit_code == 0, result.output
    frames = decoded_frames(out / "clip.mp4")
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
        f"error: {model_file}: no class 'bus'; "
        "this model's classes: pedestrian, car, motorcycle (ids 0 to 2)"
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
    assert odd.exit_code == 2 and "100 is not a multiple of 32" in odd.stderr


def test_resolve_sources_names_and_order(tmp_path):
    for rel in ("x/b.jpg", "x/a.PNG", "x/deep/c.png", "x/skip.dat", "y/a.PNG", "y/v.avi"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    explicit = tmp_path / "x" / "skip.dat"
    sources, problems = resolve_sources(
        [str(tmp_path / "x"), str(tmp_path / "y"), str(tmp_path / "x" / "b.jpg"), str(explicit)]
    )
    assert problems == []
    got = [
        (Path(s.location).relative_to(tmp_path).as_posix(), s.kind, s.name, s.suffix)
        for s in sources
    ]
    assert got == [
        ("x/a.PNG", IMAGE, "a", ".PNG"),
        ("x/b.jpg", IMAGE, "b", ".jpg"),
        ("x/deep/c.png", IMAGE, "deep/c", ".png"),
        ("y/a.PNG", IMAGE, "a-2", ".PNG"),
        ("y/v.avi", VIDEO, "v", ".mp4"),
        ("x/skip.dat", IMAGE, "skip", ".jpg"),  # named explicitly: taken, reported if unreadable
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


def test_box_vote_moves_the_kept_boxes_of_a_real_model_and_nothing_else():
    from yolo_cli.boxes import iou

    sample = config.PACKAGE_ROOT / "data" / "samples" / "driveai_street.jpg"
    common = [sample, "--model", "coco", "--json", "--no-save"]
    voted, plain = (
        records(detect(*common, *flag))[0]["detections"] for flag in ([], ["--no-box-vote"])
    )
    assert len(voted) >= 3
    assert [(d["score"], d["class"]) for d in voted] == [(d["score"], d["class"]) for d in plain]
    overlap = np.diag(iou([d["xyxy"] for d in voted], [d["xyxy"] for d in plain]))
    assert (overlap > 0.5).all() and (overlap < 0.99).any()
