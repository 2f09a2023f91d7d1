"""The oracle for detections of two runtimes of one model: the same boxes (within ``box_atol``
pixels), classes and scores (within ``score_atol``), matched one to one whatever their order
(two boxes whose scores differ by less than the tolerance may swap places)."""

import numpy as np


def assert_same_detections(got, want, box_atol: float = 0.5, score_atol: float = 1e-4) -> None:
    """got, want: one :class:`yolo_cli.postprocess.Detections` per image, same images."""
    assert len(got) == len(want)
    for image, (g, w) in enumerate(zip(got, want)):
        assert len(g) == len(w), f"image {image}: {len(g)} detections, want {len(w)}"
        free = np.ones(len(g), bool)
        for k in range(len(w)):
            close = (
                free
                & (g.classes == w.classes[k])
                & (np.abs(g.boxes - w.boxes[k]).max(axis=1, initial=0) <= box_atol)
                & (np.abs(g.scores - w.scores[k]) <= score_atol)
            )
            assert close.any(), (
                f"image {image}: no match for class {w.classes[k]} box {w.boxes[k]} "
                f"score {w.scores[k]:.5f}"
            )
            free[np.flatnonzero(close)[0]] = False
