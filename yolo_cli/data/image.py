"""Reading images from disk as RGB uint8, whatever they were stored as."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from yolo_cli.errors import YoloError


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file → ``(H, W, 3)`` uint8 RGB.

    Grayscale is expanded, alpha dropped, 16-bit scaled to 8-bit, and EXIF orientation applied
    (OpenCV's ``IMREAD_COLOR`` does all of these). A missing, empty, corrupt or non-image file
    raises :class:`YoloError` naming the file.
    """
    import cv2

    path = Path(path)
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except FileNotFoundError:
        raise YoloError(f"{path}: no such file") from None
    except (IsADirectoryError, PermissionError, OSError) as e:
        raise YoloError(f"{path}: cannot read ({e.strerror or e})") from None
    if data.size == 0:
        raise YoloError(f"{path}: empty file")
    image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if image is None:
        raise YoloError(f"{path}: not a readable image (corrupt or unsupported format)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def image_size(path: str | Path) -> tuple[int, int]:
    """``(width, height)`` of an image file; raises :class:`YoloError` as :func:`read_image`."""
    h, w = read_image(path).shape[:2]
    return w, h
