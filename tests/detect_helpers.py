"""The test model of ``yolo detect``'s tests and helpers to drive the command.

The test model is :mod:`rendered`'s hand-set network finding white cells as cars: only a cell
holding a white patch clears the 0.6 threshold; black and the letterbox's grey border do not.
The decoded box is the cell's centre with anchor 0's size, in model-input pixels, and the tests
map it back to the original image by hand (:func:`scene`).
"""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from rendered import ANCHORS, SIZE, hand_model, save_hand_model, score
from rendered import write_rgb as write_rgb  # for the detect tests

from yolo_cli.cli import cli

NAMES = ["pedestrian", "car", "motorcycle"]
CAR = 1
SCORE = score(len(NAMES))  # p_c · P(car)


def one_box_model(img_size: int = SIZE):
    """The hand-set network (:func:`rendered.hand_model`), finding white cells as cars."""
    return hand_model(len(NAMES), CAR, img_size)


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    """The one-box model as a model file."""
    return save_hand_model(tmp_path_factory.mktemp("m") / "one.keras", NAMES, CAR)


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


def write_video(path: Path, frames: int, image: np.ndarray, fps: float = 10.0) -> Path:
    h, w = image.shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    for _ in range(frames):
        writer.write(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def decoded_frames(path: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    return frames
