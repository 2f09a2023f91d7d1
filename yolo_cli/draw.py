"""Annotating images with detections: a box per detection, labelled ``<class> <score>``.

Each class keeps one colour (class id → palette entry), so a class looks the same in every
image and every run. Line width and text size grow with the image, and a label's text is black
or white, whichever reads better on its class colour.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from yolo_cli.postprocess import Detections

# ultralytics' palette (RGB): 20 colours that stay apart from each other and from most scenes
PALETTE = (
    (255, 56, 56), (255, 157, 151), (255, 112, 31), (255, 178, 29), (207, 210, 49),
    (72, 249, 10), (146, 204, 23), (61, 219, 134), (26, 147, 52), (0, 212, 187),
    (44, 153, 168), (0, 194, 255), (52, 69, 147), (100, 115, 255), (0, 24, 236),
    (132, 56, 255), (82, 0, 133), (203, 56, 255), (255, 149, 200), (255, 55, 199),
)  # fmt: skip


def class_colour(cls: int) -> tuple[int, int, int]:
    """The RGB colour of class id ``cls`` (the palette repeats past 20 classes)."""
    return PALETTE[int(cls) % len(PALETTE)]


def default_line_width(width: int, height: int) -> int:
    """Box line width in pixels for a ``width × height`` image: 2 up to ~670 px, then 0.3 %."""
    return max(round((width + height) / 2 * 0.003), 2)


def draw_detections(
    image: np.ndarray,
    detections: Detections,
    names: Sequence[str],
    line_width: int | None = None,
    labels: bool = True,
    scores: bool = True,
) -> np.ndarray:
    """Draw boxes and ``<class> <score>`` labels on a copy of ``image``.

    image: ``(H, W, 3)`` uint8 RGB; detections: boxes ``(N, 4)`` xyxy pixels of that image,
    classes indexing ``names``, scores the ``p_c · P(class)`` that ``--conf`` filters (shown
    with two decimals). line_width: box lines in pixels (``None``: :func:`default_line_width`; the
    label text scales with it). labels: draw the labels at all; scores: put the score
    in them. Returns the annotated ``(H, W, 3)`` uint8 RGB copy. The lowest scores are drawn
    first, so the most confident labels end up on top.
    """
    import cv2

    out = np.ascontiguousarray(image, dtype=np.uint8).copy()
    h, w = out.shape[:2]
    lw = line_width or default_line_width(w, h)
    for k in np.argsort(detections.scores, kind="stable"):
        x1, y1, x2, y2 = (int(round(float(v))) for v in detections.boxes[k])
        cls = int(detections.classes[k])
        colour = class_colour(cls)
        cv2.rectangle(out, (x1, y1), (x2, y2), colour, lw, cv2.LINE_8)
        if labels:
            text = f"{names[cls]} {float(detections.scores[k]):.2f}" if scores else names[cls]
            _label(out, text, x1, y1, colour, lw)
    return out


def _label(image: np.ndarray, text: str, x: int, y: int, colour, lw: int) -> None:
    """A filled label in the box colour at the box's top-left corner, kept inside the image:
    above the box when there is room, else just inside its top edge."""
    import cv2

    h, w = image.shape[:2]
    scale = lw / 3
    thickness = max(lw - 1, 1)
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    box_h = th + base + lw
    top = y - box_h if y - box_h >= 0 else y
    left = min(max(x, 0), max(w - tw - lw, 0))
    top = min(max(top, 0), max(h - box_h, 0))
    cv2.rectangle(image, (left, top), (left + tw + lw, top + box_h), colour, -1, cv2.LINE_8)
    cv2.putText(
        image, text, (left + lw // 2, top + th + lw // 2), cv2.FONT_HERSHEY_SIMPLEX, scale, _text_colour(colour),
        thickness, cv2.LINE_AA,
    )  # fmt: skip


def _text_colour(background) -> tuple[int, int, int]:
    """Black on light colours, white on dark ones (ITU-R BT.601 luma)."""
    r, g, b = background
    return (0, 0, 0) if 0.299 * r + 0.587 * g + 0.114 * b > 150 else (255, 255, 255)
