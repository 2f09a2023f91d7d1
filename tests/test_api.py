"""The Python API: ``from yolo_cli import …`` names, lazily imported, documented, and detection
on a NumPy image in three lines."""

import subprocess
import sys

import numpy as np

import yolo_cli
from yolo_cli.config import PACKAGE_ROOT
from yolo_cli.data.image import read_image

SAMPLE = PACKAGE_ROOT / "data" / "samples" / "street_1.jpg"


def _loaded_after(code: str) -> set[str]:
    probe = f"{code}\nimport sys\nprint(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_import_and_cli_stay_light():
    for code in ("import yolo_cli", "from yolo_cli.cli import cli"):
        loaded = _loaded_after(code)
        assert not {"tensorflow", "keras", "cv2"} & loaded, code


def test_every_public_name_resolves_and_is_documented():
    for name in yolo_cli.__all__:
        value = getattr(yolo_cli, name)
        if name != "__version__":
            assert value.__doc__, name
    assert "Detector" in dir(yolo_cli)


def test_detection_from_python_in_three_lines():
    image = read_image(SAMPLE)  # any (H, W, 3) uint8 RGB array

    from yolo_cli import Detector

    detector = Detector.from_file("synthetic")
    detections = detector(image)

    assert len(detections) >= 3
    assert detections.boxes.shape == (len(detections), 4)
    h, w = image.shape[:2]
    assert (detections.boxes >= 0).all() and (detections.boxes[:, [2, 3]] <= [w, h]).all()
    assert np.all(np.diff(detections.scores) <= 0)
    names = [detector.meta.names[c] for c in detections.classes]
    assert set(names) <= {"pedestrian", "car", "motorcycle"}


def test_api_names_are_the_library_functions():
    from yolo_cli import evaluate_detections, load_model, train_model
    from yolo_cli.metrics import evaluate
    from yolo_cli.modelfile import load_model as modelfile_load
    from yolo_cli.train import train

    assert (evaluate_detections, load_model, train_model) == (evaluate, modelfile_load, train)
