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
