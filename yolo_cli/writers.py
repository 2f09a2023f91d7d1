"""What ``yolo detect`` writes into its run folder: one unique path per output, every file
written whole or not at all.

A run folder (NAME: a source's output name, :func:`yolo_cli.sources.output_names`; FRAME: a
video's or stream's frame number; K: a detection's rank in its image, by score, from 0)::

    NAME.<suffix>                      annotated image, in its own format (.jpg when not an image)
    NAME.mp4                           annotated video or stream (mp4v), at fps / every
    labels/NAME.txt                    YOLO txt: class cx cy w h [score], normalized
    labels/NAME_FRAME.txt              … of a video's frame
    crops/CLASS/NAME_K.jpg             the image inside a detection's box
    crops/CLASS/NAME_FRAME_K.jpg       … in a video's frame

A file appears only once complete (:mod:`yolo_cli.fileio`): an annotated video when its last
frame is written, the others at once. A write that fails (disk full, no permission) raises
:class:`YoloError` naming the file; what was written before stays as it was.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from yolo_cli.errors import YoloError
from yolo_cli.fileio import AtomicTarget, write_atomic
from yolo_cli.postprocess import Detections
from yolo_cli.sources import VIDEO_SUFFIX, Frame, Source

VIDEO_FOURCC = "mp4v"
DEFAULT_FPS = 30.0  # for streams and containers that do not say
CROP_SUFFIX = ".jpg"
_UNSAFE_CLASS = re.compile(r'[\\/:*?"<>|\x00-\x1f]')


def safe_class(name: str) -> str:
    """A class name as a folder name: path separators and characters file systems refuse → _."""
    safe = _UNSAFE_CLASS.sub("_", name).strip()
    return "_" if safe in ("", ".", "..") else safe


@dataclass(frozen=True)
class Style:
    """How annotated images look (:func:`yolo_cli.draw.draw_detections`)."""

    line_width: int | None = None
    labels: bool = True
    scores: bool = True


class RunWriter:
    """Writes each frame's outputs into ``folder`` (module doc); keeps the current video's
    writer open until its frames end. ``written`` counts the files completed.

    save: annotated images and videos; save_txt / save_conf: labels, with a score column;
    save_crop: crops; every: the video frame step (the annotated video's rate is fps / every).
    """

    def __init__(
        self,
        folder: Path,
        names: Sequence[str],
        *,
        save: bool = True,
        save_txt: bool = False,
        save_conf: bool = False,
        save_crop: bool = False,
        every: int = 1,
        style: Style = Style(),
    ):
        self.folder = folder
        self.names = list(names)
        self.save, self.save_txt, self.save_conf = save, save_txt, save_conf
        self.save_crop, self.every, self.style = save_crop, every, style
        self.written = 0
        self._video: _VideoOut | None = None

    def write(self, frame: Frame, detections: Detections) -> None:
        """Labels, crops and the annotated image or video frame of one frame."""
        import cv2

        source, name = frame.source, frame.source.frame_name(frame.index)
        if self._video is not None and self._video.source != source:
            self.close()  # the video's frames have ended
        if self.save_txt:
            self._labels(name, frame.image, detections)
        if self.save_crop:
            self._crops(name, frame.image, detections)
        if not self.save:
            return
        from yolo_cli.draw import draw_detections

        annotated = draw_detections(
            frame.image,
            detections,
            self.names,
            line_width=self.style.line_width,
            labels=self.style.labels,
            scores=self.style.scores,
        )
        bgr = cv2.cvtColor(annotated, cv2.COLOR_RGB2BGR)
        if source.has_frames:
            self._video_for(source, frame.fps, bgr.shape).write(bgr)
        else:
            self._image(self.folder / (source.name + source.suffix), bgr)

    def _labels(self, name: str, image: np.ndarray, detections: Detections) -> None:
        from yolo_cli.predictions import write_yolo_txt

        h, w = image.shape[:2]
        write_yolo_txt(self.folder / "labels" / f"{name}.txt", detections, w, h, self.save_conf)
        self.written += 1

    def _crops(self, name: str, image: np.ndarray, detections: Detections) -> None:
        h, w = image.shape[:2]
        for k, (box, cls) in enumerate(zip(detections.boxes, detections.classes, strict=True)):
            x1, y1 = max(math.floor(box[0]), 0), max(math.floor(box[1]), 0)
            x2, y2 = min(math.ceil(box[2]), w), min(math.ceil(box[3]), h)
            if x2 <= x1 or y2 <= y1:
                continue
            folder = self.folder / "crops" / safe_class(self.names[int(cls)])
            self._image(folder / f"{name}_{k}{CROP_SUFFIX}", image[y1:y2, x1:x2, ::-1])

    def _image(self, target: Path, bgr: np.ndarray) -> None:
        import cv2

        ok, data = cv2.imencode(target.suffix, np.ascontiguousarray(bgr))
        if not ok:
            raise YoloError(f"{target}: cannot encode the annotated image")
        self._file(target, data.tobytes())

    def _file(self, target: Path, data: str | bytes) -> None:
        write_atomic(target, data)
        self.written += 1

    def _video_for(self, source: Source, fps: float | None, shape) -> _VideoOut:
        if self._video is not None:
            return self._video
        target = self.folder / (source.name + VIDEO_SUFFIX)
        rate = (fps or DEFAULT_FPS) / self.every
        self._video = _VideoOut(source, target, rate, (shape[1], shape[0]))
        return self._video

    def close(self) -> None:
        """Finish the open video, if any (it appears under its name only now)."""
        video, self._video = self._video, None
        if video is not None:
            video.finish()
            self.written += 1

    def abort(self) -> None:
        """Drop the open video unfinished (its temporary file is removed)."""
        video, self._video = self._video, None
        if video is not None:
            video.discard()


class _VideoOut:
    """An annotated video written to a hidden temporary file beside ``target``
    (:class:`yolo_cli.fileio.AtomicTarget`); :meth:`finish` checks it and moves it into place,
    :meth:`discard` removes it."""

    def __init__(self, source: Source, target: Path, fps: float, size: tuple[int, int]):
        import cv2

        self.source, self.target, self.size = source, target, size
        self.frames = 0
        self._place = AtomicTarget(target, VIDEO_SUFFIX)
        fourcc = cv2.VideoWriter_fourcc(*VIDEO_FOURCC)
        self._writer = cv2.VideoWriter(str(self._place.tmp), fourcc, fps, size)
        if not self._writer.isOpened():
            self.discard()
            raise YoloError(f"{target}: cannot write video ({VIDEO_FOURCC})")

    def write(self, bgr: np.ndarray) -> None:
        import cv2

        if (bgr.shape[1], bgr.shape[0]) != self.size:  # a stream that changed resolution
            bgr = cv2.resize(bgr, self.size, interpolation=cv2.INTER_AREA)
        self._writer.write(bgr)
        self.frames += 1

    def finish(self) -> None:
        """Close the file, check that every counted frame is in it (OpenCV's writer does not
        report write errors), and move it into place; raises YoloError when frames are missing.
        One frame more than counted is a Ctrl-C that came between a write and its count."""
        import cv2

        self._writer.release()
        cap = cv2.VideoCapture(str(self._place.tmp))
        stored = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if cap.isOpened() else 0
        cap.release()
        if stored < self.frames:
            self._place.discard()
            raise YoloError(
                f"{self.target}: cannot write video ({stored} of {self.frames} frames "
                "stored; disk full or not writable?)"
            )
        self._place.commit()

    def discard(self) -> None:
        self._writer.release()
        self._place.discard()


class CocoJson:
    """Detections collected for ``--save-json``, written as COCO results
    (:func:`yolo_cli.predictions.to_coco_results`) when :meth:`write` is called.

    An image is listed by its file name, a video frame by its output name ``NAME_FRAME``; the
    ``image_id`` is the image's place in the run.
    """

    def __init__(self, path: Path, names: Sequence[str]):
        self.path = path
        self.names = list(names)
        self.files: list[str] = []
        self.detections: list[Detections] = []

    def add(self, frame: Frame, detections: Detections) -> None:
        source = frame.source
        self.files.append(
            source.location if frame.index is None else source.frame_name(frame.index)
        )
        self.detections.append(detections)

    def write(self) -> None:
        import json

        from yolo_cli.predictions import to_coco_results

        results = to_coco_results(self.files, self.detections, self.names)
        write_atomic(self.path, json.dumps(results))
