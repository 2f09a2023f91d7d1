"""The use case behind ``yolo detect``: sources → frames → batches → Detector → writers.

Sources (:mod:`yolo_cli.sources`) are image files, folders, globs, list files, videos, image
URLs, and streams (cameras, ``rtsp://``, ``http(s)://`` video); video frames are taken every
``every``-th. An input that cannot be used (missing, empty, corrupt, over the pixel cap, a dead
URL) is skipped with one ``<source>: <problem>`` line and counted; the run goes on. A video's
frames that cannot be read are counted as lost.

A box's score is ``p_c · P(class)``: ``conf`` discards scores at or below it, and labels, txt
files and JSON show that same score.

Outputs (:mod:`yolo_cli.writers`) go to a folder of the run's own, made before any work
(:func:`yolo_cli.runs.run_folder`): ``out``, or ``out2``, ``out3`` … when ``out`` exists;
``runs/detect/expN`` without ``out``. It is removed again when the run writes nothing into it.
Annotated images and videos, labels (``save_txt``), crops (``save_crop``) each get a path no
other output of the run shares; ``save_json`` collects the detections as COCO results. Detect
records (:func:`yolo_cli.predictions.to_json_record`, plus ``"frame"`` for video frames) are
handed to ``on_record`` as they are made; the CLI prints them as JSON lines.

Ctrl-C stops a run cleanly: the annotated video so far is finished, the JSON written, and the
summary says ``interrupted``. A write that fails (disk full) stops the run with one
:class:`YoloError` naming the file; what was written before stays.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, closing, nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from yolo_cli.config import DEFAULTS, LIMITS, check_img_size
from yolo_cli.errors import YoloError
from yolo_cli.sources import STREAM, VIDEO, Frame

TASK = "detect"  # runs/detect/expN


@dataclass
class DetectOptions:
    """Everything ``yolo detect`` takes; ``model=None`` is the shipped :data:`yolo_cli.config.DETECT_MODEL`.

    method: ``yolo``, or ``window`` / ``conv-window`` with a window classifier as ``model``
    (:mod:`yolo_cli.baselines.detector`); several models are an ensemble and ``augment`` adds
    the mirrored and rescaled passes (:mod:`yolo_cli.ensemble`). conf: score
    (``p_c · P(class)``) threshold (``None``: the first model's own, :attr:`ModelMeta.detect_conf`);
    box_vote: kept boxes voted (:func:`yolo_cli.postprocess.vote`).
    img_size: model input side (``None``: the model's own). classes: keep only these classes,
    by name or id (``None``: all). out: the run folder (module doc). every: take every N-th
    video frame. save: write annotated images and videos, drawn with ``line_width`` (``None``:
    by image size), without labels (``hide_labels``) or scores in them (``hide_conf``).
    save_txt / save_conf / save_crop: labels, their score column, crops. save_json: a COCO
    results file to write. timeout: seconds an URL or stream may take to answer.
    """

    sources: Sequence[str]
    model: str | Sequence[str] | None = None
    method: str = DEFAULTS.method
    conf: float | None = None
    nms_iou: float = DEFAULTS.nms_iou
    box_vote: bool = DEFAULTS.box_vote
    max_det: int = DEFAULTS.max_det
    img_size: int | None = None
    batch: int = DEFAULTS.batch
    device: str = DEFAULTS.device
    classes: Sequence[str] | None = None
    out: str | None = None
    save: bool = True
    save_txt: bool = False
    save_conf: bool = False
    save_crop: bool = False
    save_json: str | None = None
    line_width: int | None = None
    hide_labels: bool = False
    hide_conf: bool = False
    every: int = 1
    timeout: float = DEFAULTS.stream_timeout
    augment: bool = False

    @property
    def writes_folder(self) -> bool:
        """Whether the run has anything to put in a run folder."""
        return self.save or self.save_txt or self.save_crop


@dataclass
class DetectSummary:
    """What a run did: counts, detections per class name, speed, device, where results went."""

    images: int = 0
    videos: int = 0
    streams: int = 0
    frames: int = 0
    lost: int = 0
    skipped: int = 0
    per_class: Counter = field(default_factory=Counter)
    seconds: float = 0.0
    device: str = ""
    out_dir: Path | None = None
    json_path: Path | None = None
    interrupted: bool = False

    @property
    def processed(self) -> int:
        """Images plus video frames that went through the model."""
        return self.images + self.frames

    def line(self) -> str:
        """One line, e.g. ``3 images, 1 video (5 frames, 2 lost), 2 skipped; 4 car, 1
        pedestrian; 12.5 images/s on /CPU:0; results in runs/detect/exp``, begun with
        ``interrupted:`` after Ctrl-C."""
        inputs = [_count(self.images, "image")]
        framed = [
            _count(n, kind) for n, kind in ((self.videos, "video"), (self.streams, "stream")) if n
        ]
        if framed:
            lost = f", {self.lost} lost" if self.lost else ""
            inputs.append(f"{', '.join(framed)} ({self.frames} frames{lost})")
        if self.skipped:
            inputs.append(f"{self.skipped} skipped")
        found = ", ".join(f"{n} {name}" for name, n in self.per_class.most_common())
        rate = self.processed / self.seconds if self.seconds > 0 else 0.0
        saved = [f"results in {self.out_dir}"] if self.out_dir else []
        saved += [f"COCO results in {self.json_path}"] if self.json_path else []
        return (
            f"{'interrupted: ' * self.interrupted}{', '.join(inputs)}; "
            f"{found or 'no detections'}; {rate:.1f} images/s on {self.device}; "
            f"{'; '.join(saved) or 'nothing saved'}"
        )


def _count(n: int, what: str) -> str:
    return f"{n} {what}{'s' * (n != 1)}"


def check_options(options: DetectOptions) -> None:
    """Refuse out-of-range numbers before any work: thresholds in
    :data:`~yolo_cli.config.LIMITS` ``.score`` (NaN never is), ``--img-size`` a multiple of
    the stride within ``LIMITS.img_size``."""
    if options.conf is not None:
        LIMITS.score.check("--conf", options.conf)
    LIMITS.score.check("--nms-iou", options.nms_iou)
    if options.batch < 1 or options.every < 1:
        raise YoloError("--batch and --every must be at least 1")
    if options.line_width is not None and options.line_width < 1:
        raise YoloError(f"--line-width {options.line_width}: expected at least 1 pixel")
    if options.img_size is not None:
        check_img_size(options.img_size)


def class_filter(classes: Sequence[str] | None, names: Sequence[str], model: Path):
    """Classes to keep, by name or id (``"car"``, ``"1"``) → sorted class ids (``None`` keeps
    all). A name the model has wins over an id; unknown names and ids raise YoloError."""
    if not classes:
        return None
    ids, unknown = set(), []
    for c in classes:
        if c in names:
            ids.add(names.index(c))
        elif c.isdigit() and int(c) < len(names):
            ids.add(int(c))
        else:
            unknown.append(c)
    if unknown:
        raise YoloError(
            f"{model}: no class {', '.join(map(repr, unknown))}; "
            f"this model's classes: {', '.join(names)} (ids 0 to {len(names) - 1})"
        )
    return np.array(sorted(ids), np.int32)


def load_detector(paths: Sequence[Path], options: DetectOptions, device):
    """The detector of ``options.method`` for the model files ``paths`` (YOLO ones at
    ``options.img_size``), several of them or ``options.augment`` merged
    (:func:`yolo_cli.ensemble.combine`)."""
    from yolo_cli.ensemble import combine

    detectors = [_open(path, options, device) for path in paths]
    return combine(detectors, paths, options.augment)


def _open(path: Path, options: DetectOptions, device):
    from yolo_cli.baselines.detector import open_detector
    from yolo_cli.inference import Thresholds

    thresholds = Thresholds(options.conf, options.nms_iou, options.max_det, options.box_vote)
    detector = open_detector(options.method, path, thresholds, device)
    size = options.img_size
    if size is None or size == detector.meta.img_size:
        return detector
    if options.method != "yolo":
        raise YoloError(
            f"{path}: --img-size applies to YOLO models, not to --method {options.method}"
        )
    return detector.resized(size, path)


def run_detect(
    options: DetectOptions,
    on_record: Callable[[dict], None] | None = None,
    on_skip: Callable[[str], None] | None = None,
    progress: Callable[[int], AbstractContextManager | None] | None = None,
) -> DetectSummary:
    """Detect on every source; write the outputs (module doc) and return the summary.

    on_record: receives each image's detect record, in input order. on_skip: receives one
    ``<source>: <problem>`` line per skipped input and per video with lost frames. progress:
    given the number of frames to come (known when no stream is among the sources), returns a
    context manager whose ``update(n)`` is called as frames are done (click's ``progressbar``
    fits), or ``None`` for no progress display.

    Returns with ``interrupted`` set after Ctrl-C in the detection loop. Raises
    :class:`YoloError` for a bad model, option, class name or results folder (before any
    work), when a write fails, and when no input at all could be processed.
    """
    from yolo_cli.fileio import check_writable
    from yolo_cli.modelfile import model_path, read_meta
    from yolo_cli.runs import run_folder

    check_options(options)
    models = [options.model] if isinstance(options.model, str | None) else list(options.model)
    paths = [model_path(m, options.method) for m in models]
    meta = read_meta(paths[0])
    if options.conf is None:
        options = replace(options, conf=meta.detect_conf)
    keep = class_filter(options.classes, meta.names, paths[0])
    json_path = check_writable(options.save_json) if options.save_json else None
    place = run_folder(options.out, TASK, fresh=True) if options.writes_folder else nullcontext()
    summary = DetectSummary()
    folder = None
    try:
        with place as folder:  # made here, before the sources are looked at
            _detect(options, paths, keep, folder, json_path, summary, on_record, on_skip, progress)
    finally:
        if folder is not None and folder.exists():  # run_folder removed it if left empty
            summary.out_dir = folder
    if not summary.processed and not summary.interrupted:
        raise YoloError(f"no input could be processed ({summary.skipped} skipped)")
    return summary


def _detect(
    options: DetectOptions,
    paths: list[Path],
    keep: np.ndarray | None,
    folder: Path | None,
    json_path: Path | None,
    summary: DetectSummary,
    on_record,
    on_skip,
    progress,
) -> None:
    """:func:`run_detect`'s work once its run folder (``folder``, ``None`` when nothing goes
    there) is claimed: resolve, load, detect, write; fills ``summary``."""
    from yolo_cli.device import select_device
    from yolo_cli.predictions import to_json_record
    from yolo_cli.sources import count_frames, iter_frames, resolve_sources
    from yolo_cli.writers import CocoJson, RunWriter, Style

    def report(line: str) -> None:
        if on_skip is not None:
            on_skip(line)

    sources, problems = resolve_sources(options.sources, options.timeout)
    summary.skipped += len(problems)
    for line in problems:
        report(line)
    if not sources:
        raise YoloError("nothing to detect on: no image or video among the sources")
    device = select_device(options.device)
    summary.device = device.name
    detector = load_detector(paths, options, device)
    names = detector.meta.names
    style = Style(options.line_width, not options.hide_labels, not options.hide_conf)
    writer = None
    if folder is not None:
        writer = RunWriter(
            folder, names, save=options.save, save_txt=options.save_txt,
            save_conf=options.save_conf, save_crop=options.save_crop, every=options.every,
            style=style,
        )  # fmt: skip
    coco = CocoJson(json_path, names) if json_path else None
    seen: set = set()

    def finish(frame: Frame, dets) -> None:
        if keep is not None:
            dets = dets.take(np.isin(dets.classes, keep))
        if writer:
            writer.write(frame, dets)
        if coco:
            coco.add(frame, dets)
        if frame.source.has_frames:
            summary.frames += 1
            seen.add(frame.source)
        else:
            summary.images += 1
        summary.per_class.update(names[int(c)] for c in dets.classes)
        if on_record is not None:
            h, w = frame.image.shape[:2]
            record = to_json_record(frame.source.location, w, h, dets, names)
            if frame.index is not None:
                record["frame"] = frame.index
            on_record(record)

    total = count_frames(sources, options.every)
    bar = progress(total) if progress and total is not None else None
    size = detector.meta.img_size
    detector.detect([np.zeros((size, size, 3), np.uint8)])  # trace now: images/s is detection
    start = time.perf_counter()
    failed = True
    try:
        frames = iter_frames(sources, options.every, options.timeout)
        with bar or _NoProgress() as ticks, closing(frames):  # closing: cameras released
            for group in _batches(frames, options.batch):
                good = [f for f in group if f.error is None]
                for frame in group:
                    if frame.error is not None:
                        summary.lost += frame.lost
                        summary.skipped += not frame.lost
                        report(frame.error)
                for frame, dets in zip(good, detector.detect([f.image for f in good]), strict=True):
                    finish(frame, dets)
                ticks.update(len(group))
        if writer:
            writer.close()  # the last video appears now
        failed = False
    except KeyboardInterrupt:
        summary.interrupted, failed = True, False
    except YoloError as e:
        kept = f"; the {writer.written} files written before are in {folder}" if writer else ""
        raise YoloError(f"{e}; run stopped{kept}") from None
    finally:
        summary.seconds = time.perf_counter() - start
        summary.videos = sum(s.kind == VIDEO for s in seen)
        summary.streams = sum(s.kind == STREAM for s in seen)
        _close(writer, coco, failed)
        summary.json_path = json_path if coco else None


def _close(writer, coco, failed: bool) -> None:
    """Finish the open video and write the JSON; after a failed write, keep what can be kept
    without hiding the first error."""
    if writer:
        if failed:
            writer.abort()
        else:
            writer.close()
    if coco:
        try:
            coco.write()
        except YoloError:
            if not failed:
                raise


def _batches(frames: Iterator[Frame], size: int) -> Iterator[list[Frame]]:
    """Frames grouped so that each group holds ``size`` readable ones (the last fewer), a
    stream's frames one at a time; unreadable frames ride along in whichever group they
    arrive in."""
    group: list[Frame] = []
    readable = 0
    for frame in frames:
        group.append(frame)
        readable += frame.error is None
        if readable == size or frame.source.kind == STREAM:  # a live frame waits for no batch
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
