"""What ``yolo detect`` writes and how it fails: crops, COCO JSON (read back by ``yolo eval``),
drawing options, names that never collide, run folders of their own, atomic writes under a
file-size limit, bad ``--out``, decompression bombs, corrupt videos, option ranges."""

import json
import resource
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from detect_helpers import (
    CAR,
    LANDSCAPE,
    NAMES,
    SCORE,
    decoded_frames,
    detect,
    model_file,
    problem_lines,
    records,
    scene,
    write_rgb,
    write_video,
)
from test_data_faults import png_bomb

from yolo_cli.cli import cli
from yolo_cli.detect import DetectOptions, run_detect
from yolo_cli.device import parse_device
from yolo_cli.draw import class_colour
from yolo_cli.errors import YoloError
from yolo_cli.sources import output_names

__all__ = ["model_file"]  # a fixture


def read_rgb(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert image is not None, path
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def files_under(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


# --- crops, JSON, drawing --------------------------------------------------------------------


def test_crop_and_coco_json_of_one_box(tmp_path, model_file):
    image, box = scene(*LANDSCAPE)
    src = write_rgb(tmp_path / "scene.png", image)
    out, coco = tmp_path / "out", tmp_path / "json" / "found.json"
    result = detect(src, "--model", model_file, "--save-crop", "--save-json", coco, "--out", out)
    assert result.exit_code == 0, result.output

    x1, y1 = np.floor(box[:2]).astype(int)
    x2, y2 = np.ceil(box[2:]).astype(int)
    crop = read_rgb(out / "crops" / "car" / "scene_0.jpg")
    assert crop.shape == (y2 - y1, x2 - x1, 3)
    assert np.abs(crop.astype(int) - image[y1:y2, x1:x2]).mean() < 4  # JPEG
    (entry,) = json.loads(coco.read_text())
    assert entry["image_id"] == 0 and entry["file_name"] == "scene.png"
    assert (entry["category_id"], entry["category"]) == (CAR, "car")
    xywh = [box[0], box[1], box[2] - box[0], box[3] - box[1]]
    np.testing.assert_allclose(entry["bbox"], xywh, atol=2e-3)
    assert entry["score"] == pytest.approx(SCORE, abs=1e-5)
    assert f"COCO results in {coco}" in result.stderr


def test_line_width_hide_labels_and_hide_conf(tmp_path, model_file):
    image, box = scene(*LANDSCAPE)
    src = write_rgb(tmp_path / "scene.png", image)

    def annotated(*options) -> np.ndarray:
        out = tmp_path / "out"
        result = detect(src, "--model", model_file, "--out", out, *options)
        assert result.exit_code == 0, result.output
        return read_rgb(Path(result.stderr.split("results in ")[1].strip()) / "scene.png")

    boxed = image.copy()
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    cv2.rectangle(boxed, (x1, y1), (x2, y2), class_colour(CAR), 5, cv2.LINE_8)
    assert (annotated("--hide-labels", "--line-width", "5") == boxed).all()

    changed = {
        name: np.count_nonzero((annotated(*options) != image).any(axis=-1))
        for name, options in [
            ("all", []),
            ("no score", ["--hide-conf"]),
            ("box", ["--hide-labels"]),
        ]
    }
    assert changed["all"] > changed["no score"] > changed["box"]


def test_save_json_read_back_by_eval_gives_the_same_map(tmp_path):
    """The shipped model on rendered scenes: eval --predictions on detect's JSON equals eval
    --model."""
    from yolo_cli.data.synth import write_synthetic

    data = write_synthetic(tmp_path / "scenes", 12, seed=5, size=320, fractions=(0.5, 0.0, 0.5))
    coco = tmp_path / "found.json"
    found = detect(
        data / "images" / "test", "--model", "synthetic", "--conf", "0.001", "--no-save",
        "--save-json", coco,
    )  # fmt: skip
    assert found.exit_code == 0, found.output
    tables = []
    for source in (["--predictions", coco], []):
        result = detect_eval("--data", data, *source, "--out", tmp_path / "eval")
        assert result.exit_code == 0, result.output
        tables.append(result.stdout.splitlines()[1:-1])  # the table between source and files
    assert tables[0] == tables[1]
    assert any("mAP" in line for line in tables[0])


def detect_eval(*args):
    from click.testing import CliRunner

    return CliRunner().invoke(cli, ["eval", *map(str, args)])


# --- names -----------------------------------------------------------------------------------


def test_outputs_that_would_share_a_name_get_their_own(tmp_path, model_file):
    image, _ = scene(*LANDSCAPE)
    folder = tmp_path / "in"
    (folder / "crops").mkdir(parents=True)
    for name in ("a.jpg", "a.png", "clip_1.png", "crops/b.png"):
        write_rgb(folder / name, image)
    write_video(folder / "clip.avi", 3, image)
    out = tmp_path / "out"
    result = detect(folder, "--model", model_file, "--save-txt", "--save-crop", "--out", out)
    assert result.exit_code == 0, result.output

    names = ["a", "a-2", "clip_1-2", "crops-2/b"]  # clip_1 would be a frame of clip
    frames = [f"clip_{i}" for i in range(3)]
    assert files_under(out) == sorted(
        ["a.jpg", "a-2.png", "clip_1-2.png", "crops-2/b.png", "clip.mp4"]
        + [f"labels/{n}.txt" for n in names + frames]
        + [f"crops/car/{n}_0.jpg" for n in names + frames]
    )
    assert result.stderr.startswith("4 images, 1 video (3 frames); 7 car;")


def test_output_names():
    assert output_names([("a", False), ("A", False), ("a", True)]) == ["a", "A-2", "a-3"]
    # an image named like a frame of a video moves, whatever order they come in
    assert output_names([("v_2", False), ("v", True), ("v_x", False)]) == ["v_2-2", "v", "v_x"]
    assert output_names([("v", True), ("v", True), ("v-2_0", False)]) == ["v", "v-2", "v-2_0-2"]
    # the output folders of a run are not an input's folder
    assert output_names([("labels/a", False), ("Crops/b", False), ("crops-2/c", False)]) == [
        "labels-2/a",
        "Crops-3/b",  # crops-2 is taken by an input folder
        "crops-2/c",
    ]
    assert output_names([("labels", False)]) == ["labels"]  # a file labels.jpg: no clash


def test_a_second_run_into_the_same_out_takes_its_own_folder(tmp_path, model_file):
    src = write_rgb(tmp_path / "a.png", scene(*LANDSCAPE)[0])
    out = tmp_path / "out"
    first = detect(src, "--model", model_file, "--save-txt", "--out", out)
    before = {f: (out / f).read_bytes() for f in files_under(out)}
    second = detect(src, "--model", model_file, "--save-txt", "--out", out)
    assert first.exit_code == second.exit_code == 0
    assert f"results in {out}\n" in first.stderr and f"results in {out}2\n" in second.stderr
    assert {f: (out / f).read_bytes() for f in files_under(out)} == before
    assert files_under(tmp_path / "out2") == ["a.png", "labels/a.txt"]


@pytest.mark.parametrize("case", ["file", "under a file", "proc"])
def test_bad_out_is_one_line_before_any_work(tmp_path, model_file, case):
    taken = tmp_path / "taken.txt"
    taken.write_text("not a folder")
    out, why = {
        "file": (taken, f"{taken}: is a file; a run folder must be a folder"),
        "under a file": (
            taken / "run",
            f"{taken / 'run'}: lies under the file {taken}; a run folder must be a folder",
        ),
        "proc": (
            Path("/proc/x"),
            "/proc/x: cannot create the run folder (No such file or directory)",
        ),
    }[case]
    # a missing source too: the folder is refused before the sources are looked at
    result = detect(tmp_path / "missing.png", "--model", model_file, "--out", out)
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [f"error: {why}"]
    assert taken.read_text() == "not a folder"


def test_save_json_into_a_folder_is_refused(tmp_path, model_file):
    src = write_rgb(tmp_path / "a.png", scene(*LANDSCAPE)[0])
    result = detect(src, "--model", model_file, "--save-json", tmp_path, "--no-save")
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [f"error: {tmp_path}: is a folder, expected a file name"]


# --- faults ----------------------------------------------------------------------------------


def test_decompression_bomb_beside_good_images(tmp_path, model_file):
    image, _ = scene(*LANDSCAPE)
    folder = tmp_path / "in"
    folder.mkdir()
    write_rgb(folder / "a.png", image)
    bomb = png_bomb(folder / "bomb.png")
    write_rgb(folder / "c.png", image)
    out = tmp_path / "out"
    result = detect(folder, "--model", model_file, "--save-txt", "--out", out)
    assert result.exit_code == 0, result.output
    (line,) = problem_lines(result)
    assert line.startswith(f"{bomb}: image is 40000×40000 = 1600000000 pixels, over the cap")
    assert files_under(out) == ["a.png", "c.png", "labels/a.txt", "labels/c.txt"]
    assert result.stderr.splitlines()[-1].startswith("2 images, 1 skipped; 2 car;")


def _limit_file_size(limit: int):
    def apply() -> None:  # runs in the child: every file it writes stops at ``limit`` bytes
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


FILE_LIMIT = 4 << 20  # above the test model (1.4 MB), which Keras unpacks to load


@pytest.mark.parametrize("kind", ["images", "video"])
def test_a_failed_write_is_one_line_and_leaves_no_partial_file(tmp_path, model_file, kind):
    """The real command under a file-size limit (RLIMIT_FSIZE: writes past it fail with EFBIG,
    as on a full disk): the file that would pass the limit is never seen, earlier ones are whole."""
    rng = np.random.default_rng(0)
    image, _ = scene(*LANDSCAPE)
    folder = tmp_path / "in"
    folder.mkdir()
    write_rgb(folder / "a.png", image)
    write_rgb(folder / "b.png", image)
    if kind == "images":
        big = write_rgb(folder / "c.png", rng.integers(0, 256, (1500, 1500, 3), dtype=np.uint8))
    else:
        big = folder / "c.mp4"  # noise: about 100 kB a frame in mp4v, in and out
        writer = cv2.VideoWriter(str(big), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (640, 480))
        for _ in range(60):
            writer.write(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8))
        writer.release()
    write_rgb(folder / "d.png", image)
    out = tmp_path / "out"
    yolo = Path(sys.executable).with_name("yolo")
    done = subprocess.run(
        [yolo, "detect", folder, "--model", model_file, "--out", out],
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=_limit_file_size(FILE_LIMIT),
    )
    assert done.returncode == 2, done.stderr
    target = out / ("c.png" if kind == "images" else "c.mp4")
    why = "File too large" if kind == "images" else "frames stored; disk full or not writable?"
    last = done.stderr.splitlines()[-1]
    assert last.startswith(f"error: {target}: cannot write") and why in last, done.stderr
    assert last.endswith(f"; run stopped; the 2 files written before are in {out}")
    assert "Traceback" not in done.stderr
    assert files_under(out) == ["a.png", "b.png"]  # no c, no temporary file, no d
    for name in ("a.png", "b.png"):
        assert (read_rgb(out / name).shape) == image.shape


def test_a_frame_written_but_not_yet_counted_is_not_a_write_error(tmp_path):
    """Ctrl-C can land between OpenCV's write of a frame and its count: the finished video then
    holds one frame more than counted, which is whole, not a failed write."""
    from yolo_cli.sources import VIDEO, Source
    from yolo_cli.writers import _VideoOut

    image = cv2.cvtColor(scene(*LANDSCAPE)[0], cv2.COLOR_RGB2BGR)
    target = tmp_path / "clip.mp4"
    video = _VideoOut(Source("clip.avi", VIDEO, "clip", ".mp4"), target, 10.0, LANDSCAPE[:2])
    for _ in range(3):
        video.write(image)
    video._writer.write(image)
    video.finish()
    capture = cv2.VideoCapture(str(target))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 4
    capture.release()
    assert files_under(tmp_path) == ["clip.mp4"]


def test_frames_lost_in_a_corrupt_video_are_counted(tmp_path, model_file):
    rng = np.random.default_rng(0)
    image, _ = scene(*LANDSCAPE)
    clip = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, LANDSCAPE[:2])
    for _ in range(40):
        frame = image.copy()
        frame[..., 1] = rng.integers(0, 256, frame.shape[:2])  # green: unseen by the model
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    data = bytearray(clip.read_bytes())
    a, b = int(len(data) * 0.4), int(len(data) * 0.6)
    data[a:b] = bytes(b - a)
    clip.write_bytes(bytes(data))

    out = tmp_path / "out"
    result = detect(clip, "--model", model_file, "--save-txt", "--out", out)
    assert result.exit_code == 0, result.output
    read = len(list((out / "labels").iterdir()))
    lost = 40 - read
    assert 0 < read < 40
    assert problem_lines(result) == [
        f"{clip}: {lost} of 40 frames could not be read (corrupt or cut short)"
    ]
    assert result.stderr.splitlines()[-1].startswith(
        f"0 images, 1 video ({read} frames, {lost} lost); {read} car;"
    )
    assert len(decoded_frames(out / "clip.mp4")) == read


# --- options ---------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [-32, 0, 100, 4128, 65536])
def test_img_size_out_of_range_is_refused(tmp_path, model_file, size):
    src = write_rgb(tmp_path / "a.png", scene(*LANDSCAPE)[0])
    result = detect(src, "--model", model_file, "--img-size", size, "--out", tmp_path / "out")
    assert result.exit_code == 2
    assert "Invalid value for '--img-size'" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()
    with pytest.raises(
        YoloError, match=rf"^--img-size {size}: expected a multiple of 32 from 32 to 4096$"
    ):
        run_detect(DetectOptions([str(src)], model=str(model_file), img_size=size))


def test_classes_by_id(tmp_path, model_file):
    src = write_rgb(tmp_path / "a.png", scene(*LANDSCAPE)[0])
    common = [src, "--model", model_file, "--json", "--no-save"]
    assert [d["class"] for d in records(detect(*common, "--classes", "1"))[0]["detections"]] == [
        "car"
    ]
    assert records(detect(*common, "--classes", "0,2"))[0]["detections"] == []
    assert [
        d["class"] for d in records(detect(*common, "--classes", "0,car"))[0]["detections"]
    ] == ["car"]
    wrong = detect(*common, "--classes", "3")
    assert wrong.exit_code == 2
    assert wrong.stderr.splitlines() == [
        f"error: {model_file}: no class '3'; this model's classes: {', '.join(NAMES)} (ids 0 to 2)"
    ]


def test_device_index_is_a_gpu(tmp_path, model_file):
    assert parse_device("0") == ("gpu", 0)
    assert parse_device("cuda:1") == ("gpu", 1)
    import tensorflow as tf

    src = write_rgb(tmp_path / "a.png", scene(*LANDSCAPE)[0])
    result = detect(src, "--model", model_file, "--device", "0", "--no-save", "--json")
    if tf.config.list_physical_devices("GPU"):
        assert result.exit_code == 0, result.output
        assert "on /GPU:0;" in result.stderr
    else:
        assert result.exit_code == 2
        assert result.stderr.splitlines() == [
            "error: --device 0: TensorFlow sees no GPU on this machine"
        ]
