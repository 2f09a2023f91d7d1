"""The use case behind ``yolo detect``: sources → frames → batches → Detector → writers.

Sources are image files, folders (searched recursively for image and video files, sorted),
glob patterns (expanded here when the shell did not), and video files (every frame, or every
``every``-th). A file that cannot be used (missing, empty, corrupt, not an image) is skipped
with one ``<file>: <problem>`` line and counted; the run goes on.

Outputs go to one run folder (``runs/detect/expN`` unless ``out`` is given), created when the
first output is written:

- annotated images under the image's name (files found in a folder keep their path inside
  it), annotated videos as ``<stem>.mp4`` (mp4v) at the source's frame size, at
  ``fps / every`` so that they last as long as the source;
- with ``save_txt``, ``labels/<name>.txt`` in YOLO txt (``labels/<stem>_<frame>.txt`` for video
  frames), with a confidence column when ``save_conf``;
- detect records (:func:`yolo_cli.predictions.to_json_record`, plus ``"frame"`` for video
  frames) handed to ``on_record`` as they are made; the CLI prints them as JSON lines.
"""

from __future__ import annotations

import glob
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from yolo_cli.config import DEFAULTS, IMAGE_EXTENSIONS, VIDEO_EXTENSIONS
from yolo_cli.errors import YoloError

VIDEO_FOURCC = "mp4v"
VIDEO_SUFFIX = ".mp4"
_GLOB_MAGIC = set("*?[")


@dataclass
class DetectOptions:
    """Everything ``yolo detect`` takes; ``model=None`` is the shipped :data:`yolo_cli.config.DETECT_MODEL`.

    method: ``yolo``, or ``window`` / ``conv-window`` with a window classifier as ``model``
    (:mod:`yolo_cli.baselines.detector`). img_size: model input side (``None``: the model's
    own). classes: keep only these class names (``None``: all). out: the run folder
    (``None``: the next ``runs/detect/expN``). every: take every N-th video frame. save: write
    annotated images and videos.
    """

    sources: Sequence[str]
    model: str | None = None
    method: str = "yolo"
    conf: float = DEFAULTS.conf_threshold
    nms_iou: float = DEFAULTS.nms_iou
    max_det: int = DEFAULTS.max_det
    img_size: int | None = None
    batch: int = DEFAULTS.batch
    device: str = "auto"
    classes: Sequence[str] | None = None
    out: str | None = None
    save: bool = True
    save_txt: bool = False
    save_conf: bool = False
    every: int = 1


@dataclass
class DetectSummary:
    """What a run did: counts, detections per class name, speed, device, where results went."""

    images: int = 0
    videos: int = 0
    frames: int = 0
    skipped: int = 0
    per_class: Counter = field(default_factory=Counter)
    seconds: float = 0.0
    device: str = ""
    out_dir: Path | None = None

    @property
    def processed(self) -> int:
        """Images plus video frames that went through the model."""
        return self.images + self.frames

    def line(self) -> str:
        """One line, e.g. ``3 images, 1 video (5 frames), 2 skipped; 4 car, 1 pedestrian;
        12.5 images/s on /CPU:0; results in runs/detect/exp``."""
        inputs = [f"{self.images} image{'s' * (self.images != 1)}"]
        if self.videos:
            inputs.append(f"{self.videos} video{'s' * (self.videos != 1)} ({self.frames} frames)")
        if self.skipped:
            inputs.append(f"{self.skipped} skipped")
        found = ", ".join(f"{n} {name}" for name, n in self.per_class.most_common())
        rate = self.processed / self.seconds if self.seconds > 0 else 0.0
        where = f"results in {self.out_dir}" if self.out_dir else "nothing saved"
        return (
            f"{', '.join(inputs)}; {found or 'no detections'}; "
            f"{rate:.1f} images/s on {self.device}; {where}"
        )


@dataclass(frozen=True)
class Source:
    """One input file. name: its output name (relative path); video: read frame by frame."""

    path: Path
    name: str
    video: bool


@dataclass
class Frame:
    """An image to detect on, or the reason there is none.

    image: ``(H, W, 3)`` uint8 RGB, or ``None`` with ``error`` a ``<file>: <problem>`` line.
    index: the frame number in a video source, ``None`` for an image file.
    """

    source: Source
    index: int | None
    image: np.ndarray | None = None
    error: str | None = None


def is_media(path: Path) -> bool:
    """Whether a file found in a folder or by a glob is taken: image and video extensions."""
    return path.suffix.lower() in IMAGE_EXTENSIONS + VIDEO_EXTENSIONS


def resolve_sources(sources: Sequence[str]) -> tuple[list[Source], list[str]]:
    """Command-line sources → input files, in order, each once, and one line per bad source.

    A folder contributes its image and video files (recursively, sorted by path); a pattern
    with ``* ? [`` that is not an existing path is expanded (``**`` recursive), keeping media
    files and expanding folders; a file named explicitly is taken whatever its extension.
    Output names are unique: a clash gets ``_2``, ``_3`` … before the suffix.
    """
    found: list[tuple[Path, str]] = []  # (file, output name)
    problems: list[str] = []
    for spec in sources:
        path = Path(spec)
        if path.is_dir():
            found += _folder(path)
        elif path.exists():
            found.append((path, path.name))
        elif _GLOB_MAGIC & set(spec):
            matches = [Path(m) for m in sorted(glob.glob(spec, recursive=True))]
            for m in matches:
                if m.is_dir():
                    found += _folder(m)
                elif is_media(m):
                    found.append((m, m.name))
            if not matches:
                problems.append(f"{spec}: no files match")
        else:
            problems.append(f"{spec}: no such file or folder")
    seen: set[Path] = set()
    names: set[str] = set()
    out = []
    for file, name in found:
        key = file.resolve()
        if key in seen:
            continue
        seen.add(key)
        video = file.suffix.lower() in VIDEO_EXTENSIONS
        if video:
            name = str(Path(name).with_suffix(VIDEO_SUFFIX))
        name = _unique(name, names)
        names.add(name)
        out.append(Source(file, name, video))
    return out, problems


def _folder(folder: Path) -> list[tuple[Path, str]]:
    files = sorted(p for p in folder.rglob("*") if p.is_file() and is_media(p))
    return [(p, p.relative_to(folder).as_posix()) for p in files]


def _unique(name: str, taken: set[str]) -> str:
    path, n = Path(name), 1
    while name in taken:
        n += 1
        name = str(path.with_name(f"{path.stem}_{n}{path.suffix}"))
    return name


def open_video(path: Path):
    """``cv2.VideoCapture`` for a file, FFmpeg's own log silenced: a broken file is reported
    once, as ``<file>: <problem>``, not again in FFmpeg's words."""
    import cv2

    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET; read at each open
    return cv2.VideoCapture(str(path))


def count_frames(sources: Sequence[Source], every: int = 1) -> int:
    """How many frames :func:`iter_frames` will yield, from the videos' headers (an estimate
    for videos whose header is wrong); used for progress bars."""
    import cv2

    total = 0
    for s in sources:
        if s.video:
            cap = open_video(s.path)
            n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if cap.isOpened() else 0
            cap.release()
            total += max(-(-n // every), 1)
        else:
            total += 1
    return total


def iter_frames(sources: Sequence[Source], every: int = 1) -> Iterator[Frame]:
    """Read the sources in order: one :class:`Frame` per image file, and frames 0, every,
    2·every … of each video. Unreadable inputs yield a Frame with ``error`` set instead."""
    from yolo_cli.data.image import read_image

    for source in sources:
        if source.video:
            yield from _video_frames(source, every)
            continue
        try:
            yield Frame(source, None, read_image(source.path))
        except YoloError as e:
            yield Frame(source, None, error=str(e))


def _video_frames(source: Source, every: int) -> Iterator[Frame]:
    import cv2

    cap = open_video(source.path)
    try:
        if not cap.isOpened():
            yield Frame(source, None, error=f"{source.path}: cannot open video")
            return
        index = 0
        while True:
            # grab() skips a frame without converting it; read() = grab() + retrieve()
            ok = cap.grab()
            if not ok:
                break
            if index % every == 0:
                ok, bgr = cap.retrieve()
                if not ok:
                    break
                yield Frame(source, index, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
            index += 1
        if index == 0:
            yield Frame(source, None, error=f"{source.path}: no frames could be read")
    finally:
        cap.release()


def class_filter(classes: Sequence[str] | None, names: Sequence[str], model: Path):
    """Class names to keep → sorted class ids (``None`` keeps all); unknown names raise."""
    if not classes:
        return None
    unknown = [c for c in classes if c not in names]
    if unknown:
        raise YoloError(
            f"{model}: no class {', '.join(map(repr, unknown))}; "
            f"this model's classes: {', '.join(names)}"
        )
    return np.array(sorted({names.index(c) for c in classes}), np.int32)


def load_detector(path: Path, options: DetectOptions, device):
    """The detector of ``options.method`` for ``path``; a YOLO one at ``options.img_size``."""
    from yolo_cli.baselines.detector import open_detector
    from yolo_cli.device import device_scope
    from yolo_cli.inference import Detector, Thresholds
    from yolo_cli.model import resized_model

    thresholds = Thresholds(options.conf, options.nms_iou, options.max_det)
    detector = open_detector(options.method, path, thresholds, device)
    size = options.img_size
    if size is None or size == detector.meta.img_size:
        return detector
    if options.method != "yolo":
        raise YoloError(
            f"{path}: --img-size applies to YOLO models, not to --method {options.method}"
        )
    with device_scope(device):
        model = resized_model(detector.model, detector.meta, size, path)
    return Detector(model, replace(detector.meta, img_size=size), thresholds, device)


class _Writers:
    """Writes each frame's outputs into the run folder, made on first use (``out_dir`` stays
    ``None`` while nothing is written); keeps the current video's writer open until its
    frames end."""

    def __init__(self, options: DetectOptions):
        self.options = options
        self.out_dir: Path | None = None
        self._video: tuple[Source, object] | None = None

    def folder(self) -> Path:
        if self.out_dir is None:
            from yolo_cli.train import next_run_dir

            out = self.options.out
            self.out_dir = Path(out) if out else next_run_dir(Path("runs") / "detect")
            self.out_dir.mkdir(parents=True, exist_ok=True)
        return self.out_dir

    def write(self, frame: Frame, detections, annotated: np.ndarray | None) -> None:
        """Labels (``save_txt``) and the annotated image or video frame (``save``)."""
        import cv2

        from yolo_cli.predictions import write_yolo_txt

        source = frame.source
        if self.options.save_txt:
            label = Path(source.name).with_suffix(".txt")
            if frame.index is not None:
                label = label.with_name(f"{label.stem}_{frame.index}.txt")
            h, w = frame.image.shape[:2]
            path = self.folder() / "labels" / label
            write_yolo_txt(path, detections, w, h, self.options.save_conf)
        if not self.options.save:
            return
        bgr = cv2.cvtColor(annotated, cv2.COLOR_RGB2BGR)
        if source.video:
            self._video_writer(source, bgr.shape).write(bgr)
            return
        target = self.folder() / source.name
        if target.suffix.lower() not in IMAGE_EXTENSIONS:
            target = target.with_name(target.name + ".jpg")
        target.parent.mkdir(parents=True, exist_ok=True)
        ok, data = cv2.imencode(target.suffix, bgr)
        if not ok:
            raise YoloError(f"{target}: cannot encode the annotated image")
        target.write_bytes(data.tobytes())

    def _video_writer(self, source: Source, shape):
        import cv2

        if self._video is not None and self._video[0] == source:
            return self._video[1]
        self.close()
        cap = open_video(source.path)
        fps = cap.get(cv2.CAP_PROP_FPS) or 30.0  # some containers do not say
        cap.release()
        target = self.folder() / source.name
        target.parent.mkdir(parents=True, exist_ok=True)
        h, w = shape[:2]
        fourcc = cv2.VideoWriter_fourcc(*VIDEO_FOURCC)
        writer = cv2.VideoWriter(str(target), fourcc, fps / self.options.every, (w, h))
        if not writer.isOpened():
            raise YoloError(f"{target}: cannot write video ({VIDEO_FOURCC})")
        self._video = (source, writer)
        return writer

    def close(self) -> None:
        if self._video is not None:
            self._video[1].release()
            self._video = None


def run_detect(
    options: DetectOptions,
    on_record: Callable[[dict], None] | None = None,
    on_skip: Callable[[str], None] | None = None,
    progress: Callable[[int], AbstractContextManager | None] | None = None,
) -> DetectSummary:
    """Detect on every source; write the outputs (module doc) and return the summary.

    on_record: receives each image's detect record, in input order. on_skip: receives one
    ``<file>: <problem>`` line per skipped input. progress: given the number of frames to come,
    returns a context manager whose ``update(n)`` is called as frames are done (click's
    ``progressbar`` fits), or ``None`` for no progress display.
    Raises :class:`YoloError` for a bad model, option or class name, and when no input at all
    could be processed.
    """
    from yolo_cli.device import select_device
    from yolo_cli.draw import draw_detections
    from yolo_cli.modelfile import model_path, read_meta
    from yolo_cli.predictions import to_json_record

    if options.batch < 1 or options.every < 1:
        raise YoloError("--batch and --every must be at least 1")
    path = model_path(options.model, options.method)
    keep = class_filter(options.classes, read_meta(path).names, path)
    sources, problems = resolve_sources(options.sources)
    summary = DetectSummary()

    def skip(line: str) -> None:
        summary.skipped += 1
        if on_skip is not None:
            on_skip(line)

    for line in problems:
        skip(line)
    if not sources:
        raise YoloError("nothing to detect on: no image or video among the sources")
    device = select_device(options.device)
    summary.device = device.name
    detector = load_detector(path, options, device)
    names = detector.meta.names
    writers = _Writers(options)
    videos: set[Source] = set()

    def finish(frame: Frame, dets) -> None:
        if keep is not None:
            dets = dets.take(np.isin(dets.classes, keep))
        if frame.source.video:
            summary.frames += 1
            videos.add(frame.source)
        else:
            summary.images += 1
        summary.per_class.update(names[int(c)] for c in dets.classes)
        annotated = draw_detections(frame.image, dets, names) if options.save else None
        writers.write(frame, dets, annotated)
        if on_record is not None:
            h, w = frame.image.shape[:2]
            record = to_json_record(frame.source.path, w, h, dets, names)
            if frame.index is not None:
                record["frame"] = frame.index
            on_record(record)

    bar = progress(count_frames(sources, options.every)) if progress else None
    size = detector.meta.img_size
    detector.detect([np.zeros((size, size, 3), np.uint8)])  # trace now: images/s is detection
    start = time.perf_counter()
    with bar or _NoProgress() as ticks:
        try:
            for frames in _batches(iter_frames(sources, options.every), options.batch):
                good = [f for f in frames if f.error is None]
                for frame in frames:
                    if frame.error is not None:
                        skip(frame.error)
                for frame, dets in zip(good, detector.detect([f.image for f in good]), strict=True):
                    finish(frame, dets)
                ticks.update(len(frames))
        finally:
            writers.close()
    summary.seconds = time.perf_counter() - start
    summary.videos = len(videos)
    if not summary.processed:
        raise YoloError(f"no input could be processed ({summary.skipped} skipped)")
    summary.out_dir = writers.out_dir
    return summary


def _batches(frames: Iterator[Frame], size: int) -> Iterator[list[Frame]]:
    """Frames grouped so that each group holds ``size`` readable ones (the last fewer);
    unreadable frames ride along in whichever group they arrive in."""
    group: list[Frame] = []
    readable = 0
    for frame in frames:
        group.append(frame)
        readable += frame.error is None
        if readable == size:
            yield group
            group, readable = [], 0
    if group:
        yield group


class _NoProgress:
    """Stands in for a progress bar when none is wanted."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        return None

    def update(self, n: int) -> None:
        pass
