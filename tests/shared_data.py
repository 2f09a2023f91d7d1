"""The real datasets the tests read (../shared/datasets, or $YOLO_CLI_DATASETS), and markers
that skip a test, with the reason, where a dataset is absent."""

import pytest

from yolo_cli.config import datasets_root

BCCD = datasets_root() / "bccd"
RACCOON = datasets_root() / "raccoon"
needs_bccd = pytest.mark.skipif(
    not (BCCD / "BCCD" / "Annotations").is_dir(), reason=f"BCCD dataset not found under {BCCD}"
)
needs_raccoon = pytest.mark.skipif(
    not (RACCOON / "annotations").is_dir(), reason=f"raccoon dataset not found under {RACCOON}"
)
YOLO_FASTEST = datasets_root().parent / "weights" / "yolo-fastest"
YOLO_FASTEST_MODELS = ("yolo-fastest-1.1", "yolo-fastest-1.1-xl")
DARKNET_PHOTOS = datasets_root() / "photos" / "darknet"
needs_yolo_fastest = pytest.mark.skipif(
    not all((YOLO_FASTEST / f"{n}.weights").is_file() for n in YOLO_FASTEST_MODELS)
    or not (DARKNET_PHOTOS / "dog.jpg").is_file(),
    reason=f"Darknet models or photos not found under {YOLO_FASTEST} and {DARKNET_PHOTOS}",
)
PHOTOS = datasets_root() / "photos"
needs_photos = pytest.mark.skipif(
    not (PHOTOS / "driveai").is_dir() or not (PHOTOS / "darknet").is_dir(),
    reason=f"real photos not found under {PHOTOS}",
)
HIGHWAY = datasets_root() / "highway"
needs_highway = pytest.mark.skipif(
    not (HIGHWAY / "data.yaml").is_file(), reason=f"highway dataset not found under {HIGHWAY}"
)
