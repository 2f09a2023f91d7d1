"""Reading images from disk as RGB uint8, whatever they were stored as, and their sizes.

A small file can declare a huge image (a decompression bomb: a 1.6 MB PNG saying 40000×40000
asks the decoder for 4.8 GB). Every image's pixel count is therefore read from its header and
checked against :func:`~yolo_cli.config.max_pixels` before anything is decoded.
"""

from __future__ import annotations

import io
import threading
import warnings
from pathlib import Path

import numpy as np

from yolo_cli.config import max_pixels
from yolo_cli.errors import YoloError

_EXIF_ORIENTATION = 0x0112
_PILLOW_CAP = threading.Lock()  # held while Pillow's own bomb check is lifted for one header


class OversizedImage(YoloError):
    """An image whose header declares more pixels than the cap; nothing was decoded."""


def check_pixels(path: str | Path, width: int, height: int) -> None:
    """Raise :class:`OversizedImage` when a ``width × height`` image is over the pixel cap."""
    cap = max_pixels()
    if width * height > cap:
        raise OversizedImage(
            f"{path}: image is {width}×{height} = {width * height} pixels, over the cap of "
            f"{cap} (set YOLO_CLI_MAX_PIXELS to allow it)"
        )


def _open_header(source) -> tuple[int, int, int | None]:
    from PIL import Image

    with Image.open(source) as im:
        return *im.size, im.getexif().get(_EXIF_ORIENTATION)


def _header(source) -> tuple[int, int, int | None] | None:
    """``(width, height, EXIF orientation or None)`` as the file's header states them (no
    pixel data read), or None when Pillow cannot identify the file.

    Pillow refuses headers over twice its own cap before saying the size; that check is lifted
    for the one read (ours follows), under a lock since the setting is process-wide.
    """
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            try:
                return _open_header(source)
            except Image.DecompressionBombError:
                if isinstance(source, io.BytesIO):
                    source.seek(0)
                with _PILLOW_CAP:
                    saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
                    try:
                        return _open_header(source)
                    finally:
                        Image.MAX_IMAGE_PIXELS = saved
    except Exception:  # Pillow raises many types on bad input; the decoder gives the verdict
        return None


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file → ``(H, W, 3)`` uint8 RGB.

    Grayscale is expanded, alpha dropped, 16-bit scaled to 8-bit, and EXIF orientation applied
    (OpenCV's ``IMREAD_COLOR`` does all of these). A missing, empty, corrupt or non-image file
    raises :class:`YoloError` naming the file; one whose header declares more pixels than the
    cap raises :class:`OversizedImage` before decoding.
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
    header = _header(io.BytesIO(data.tobytes()))
    if header is not None:
        check_pixels(path, header[0], header[1])
    try:
        image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    except cv2.error as e:  # OpenCV's own limits (e.g. its pixel cap) raise rather than fail
        reason = str(e).strip().splitlines()[-1]
        raise YoloError(f"{path}: not a readable image ({reason})") from None
    if image is None:
        raise YoloError(f"{path}: not a readable image (corrupt or unsupported format)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def image_size(path: str | Path) -> tuple[int, int]:
    """``(width, height)`` of an image file, by decoding it; raises as :func:`read_image`."""
    h, w = read_image(path).shape[:2]
    return w, h


def header_size(path: str | Path) -> tuple[int, int]:
    """``(width, height)`` from an image file's header, as :func:`read_image` would return it
    (EXIF rotations by 90° swap the sides); decodes the file when the header cannot be read.

    Raises :class:`OversizedImage` over the pixel cap, :class:`YoloError` for missing, empty,
    corrupt or non-image files.
    """
    header = _header(path)
    if header is None:
        return image_size(path)
    width, height, orientation = header
    check_pixels(path, width, height)
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)
