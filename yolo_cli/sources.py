"""Where ``yolo detect``'s frames come from: command-line sources → :class:`Source` → :class:`Frame`.

A source given on the command line (or on a line of a list file) is, checked in this order:

- an URL (``scheme://…``). An ``http(s)`` URL whose path ends in an image extension, or that
  answers with an ``image/*`` content type, is an image, downloaded (at most
  :data:`~yolo_cli.config.LIMITS` ``.url_image_bytes``) and read like an image file. Any other URL
  (``rtsp://``, ``rtmp://``, an ``http(s)`` video file or MJPEG stream) is a stream, read by
  OpenCV's FFmpeg capture until it ends. ``http(s)`` URLs are asked once while the sources are
  resolved, so a dead one (nothing listening, a 404) is reported before any work;
- an existing folder: its image and video files, recursively, sorted by path;
- an existing file: a ``.txt`` file is a list of sources, one a line (blank lines and lines
  starting with ``#`` skipped; a relative path is taken as given when it exists, else relative to
  the list's folder); a video extension makes a video; anything else is an image (reported when
  it cannot be read);
- a whole number that is not a file: a camera index, read until Ctrl-C (``0`` is the first
  webcam);
- a glob pattern (expanded here when the shell did not; ``**`` recursive).

Every source gets an output name (:func:`output_names`) that no other output of the run can
share; :mod:`yolo_cli.writers` derives every file it writes from it.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from yolo_cli.config import DEFAULTS, IMAGE_EXTENSIONS, LIMITS, VIDEO_EXTENSIONS
from yolo_cli.errors import YoloError

IMAGE, VIDEO, STREAM = "image", "video", "stream"
LIST_SUFFIX = ".txt"
VIDEO_SUFFIX = ".mp4"  # annotated videos and streams
IMAGE_SUFFIX = ".jpg"  # annotated images whose input has no image extension
RESERVED = ("labels", "crops")  # run-folder entries that hold other outputs
_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")
_GLOB_MAGIC = set("*?[")
_UNSAFE = re.compile(r"[^\w.-]+")


@dataclass(frozen=True)
class Source:
    """One input. location: a file path, URL or camera index; kind: :data:`IMAGE`, :data:`VIDEO`
    (a file: its frame count is known) or :data:`STREAM` (an URL or camera: read until it ends).

    name: the output name, a relative POSIX path without suffix, unique in the run
    (:func:`output_names`); suffix: the annotated copy's suffix.
    """

    location: str
    kind: str
    name: str
    suffix: str

    @property
    def has_frames(self) -> bool:
        return self.kind != IMAGE

    @property
    def camera(self) -> int | None:
        """The camera index of a camera stream, else ``None``."""
        return int(self.location) if self.kind == STREAM and self.location.isdigit() else None

    @property
    def is_url(self) -> bool:
        return is_url(self.location)

    def frame_name(self, index: int | None) -> str:
        """The output name of frame ``index`` (``<name>_<index>``), or of the image itself."""
        return self.name if index is None else f"{self.name}_{index}"


@dataclass
class Frame:
    """An image to detect on, or the reason there is none.

    image: ``(H, W, 3)`` uint8 RGB, or ``None`` with ``error`` a ``<source>: <problem>`` line.
    index: the frame number in a video or stream, ``None`` for an image. fps: the video's or
    stream's frame rate (``None`` when it does not say). lost: with ``error``, how many frames
    of a video could not be read (the video itself was used).
    """

    source: Source
    index: int | None
    image: np.ndarray | None = None
    error: str | None = None
    fps: float | None = None
    lost: int = 0


def is_url(spec: str) -> bool:
    return bool(_URL.match(spec))


def is_media(path: Path) -> bool:
    """Whether a file found in a folder or by a glob is taken: image and video extensions."""
    return path.suffix.lower() in IMAGE_EXTENSIONS + VIDEO_EXTENSIONS


@dataclass(frozen=True)
class _Found:
    location: str
    kind: str
    base: str  # output name before it is made unique
    suffix: str
    key: str  # the same input reached twice has the same key


def resolve_sources(
    specs: Sequence[str], timeout: float = DEFAULTS.stream_timeout
) -> tuple[list[Source], list[str]]:
    """Command-line sources (module doc) → inputs in order, each once, and one line per bad one.

    timeout: seconds to wait for an ``http(s)`` server's answer.
    """
    found: list[_Found] = []
    problems: list[str] = []
    for spec in specs:
        found += _expand(spec, Path.cwd(), problems, timeout, lists=())
    first: dict[str, _Found] = {}
    for f in found:
        first.setdefault(f.key, f)  # the first time an input is named sets its place
    unique = list(first.values())
    names = output_names([(f.base, f.kind != IMAGE) for f in unique])
    sources = [Source(f.location, f.kind, n, f.suffix) for f, n in zip(unique, names, strict=True)]
    return sources, problems


def _expand(
    spec: str, folder: Path, problems: list[str], timeout: float, lists: tuple[Path, ...]
) -> list[_Found]:
    """One source spec → inputs; a relative path is tried as given, then in ``folder``.

    lists: the list files being read (a list that names itself is a problem, not a loop).
    """
    if is_url(spec):
        try:
            return [_url(spec, timeout)]
        except YoloError as e:
            problems.append(str(e))
            return []
    path = Path(spec)
    if not path.exists() and not path.is_absolute() and (folder / path).exists():
        path = folder / path
    if path.is_dir():
        media = _media_in(path)
        if not media:
            problems.append(f"{path}: a folder without images or videos")
        return [_file(p, p.relative_to(path).with_suffix("").as_posix()) for p in media]
    if path.is_file() and path.suffix.lower() == LIST_SUFFIX:
        return _list(path, problems, timeout, lists)
    if path.exists():
        return [_file(path, path.stem)]
    if spec.strip().isdigit():
        index = spec.strip()
        return [_Found(index, STREAM, f"camera{index}", VIDEO_SUFFIX, f"camera:{int(index)}")]
    if _GLOB_MAGIC & set(spec):
        matches = [Path(m) for m in sorted(glob.glob(spec, recursive=True))]
        if not matches:
            problems.append(f"{spec}: no files match")
        out = []
        for m in matches:
            if m.is_dir():
                out += [_file(p, p.relative_to(m).with_suffix("").as_posix()) for p in _media_in(m)]
            elif is_media(m):
                out.append(_file(m, m.stem))
        return out
    problems.append(f"{spec}: no such file or folder")
    return []


def _media_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and is_media(p))


def _file(path: Path, base: str) -> _Found:
    suffix = path.suffix.lower()
    if suffix in VIDEO_EXTENSIONS:
        return _Found(str(path), VIDEO, base, VIDEO_SUFFIX, str(path.resolve()))
    out_suffix = path.suffix if suffix in IMAGE_EXTENSIONS else IMAGE_SUFFIX
    return _Found(str(path), IMAGE, base, out_suffix, str(path.resolve()))


def _list(path: Path, problems: list[str], timeout: float, lists: tuple[Path, ...]) -> list[_Found]:
    """The sources a list file names, one a line."""
    if path.resolve() in lists:
        problems.append(f"{path}: the list includes itself")
        return []
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        problems.append(f"{path}: cannot read the list ({getattr(e, 'strerror', None) or e})")
        return []
    out: list[_Found] = []
    known = len(problems)
    for n, line in enumerate(text.splitlines(), start=1):
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        entry_problems: list[str] = []
        out += _expand(entry, path.parent, entry_problems, timeout, (*lists, path.resolve()))
        problems += [f"{path}:{n}: {p}" for p in entry_problems]
    if not out and len(problems) == known:
        problems.append(f"{path}: the list names no sources")
    return out


def _url(url: str, timeout: float) -> _Found:
    """An URL as an image or a stream (module doc); a dead ``http(s)`` URL raises YoloError."""
    parsed = urllib.parse.urlsplit(url)
    path = PurePosixPath(urllib.parse.unquote(parsed.path))
    base = _safe(path.stem) or _safe(parsed.netloc) or "stream"
    suffix = path.suffix.lower()
    if parsed.scheme.lower() in ("http", "https"):
        if suffix in IMAGE_EXTENSIONS or _content_type(url, timeout).startswith("image/"):
            image_suffix = suffix if suffix in IMAGE_EXTENSIONS else IMAGE_SUFFIX
            return _Found(url, IMAGE, base, image_suffix, url)
    return _Found(url, STREAM, base, VIDEO_SUFFIX, url)


def _safe(text: str) -> str:
    return _UNSAFE.sub("_", text).strip("._")


def _content_type(url: str, timeout: float) -> str:
    """The content type an ``http(s)`` URL answers with (lower case); the connection is closed
    after the headers (a stream is opened again by OpenCV)."""
    with _http_get(url, timeout) as response:
        return (response.headers.get_content_type() or "").lower()


def _http_get(url: str, timeout: float):
    """The open response to a GET of ``url`` (a context manager); YoloError when the server
    cannot be reached, does not answer within ``timeout`` seconds, or answers an error."""
    request = urllib.request.Request(url, headers={"User-Agent": "yolo-cli"})
    try:
        return urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as e:
        e.close()
        raise YoloError(f"{url}: HTTP {e.code} {e.reason}") from None
    except urllib.error.URLError as e:
        reason = getattr(e.reason, "strerror", None) or e.reason
        raise YoloError(f"{url}: cannot connect ({reason})") from None
    except TimeoutError:
        raise YoloError(f"{url}: no answer within {timeout:g} s") from None
    except (ValueError, OSError) as e:
        raise YoloError(f"{url}: cannot open ({getattr(e, 'strerror', None) or e})") from None


def output_names(bases: Sequence[tuple[str, bool]]) -> list[str]:
    """Output names for inputs ``(base name, has frames)``, in order: unique, so that no two
    files a run writes share a path.

    A name is a relative POSIX path without suffix. The rules, each resolved by appending
    ``-2``, ``-3`` … (the first free one):

    - names differ ignoring case (``a.jpg`` and ``a.png`` are ``a`` and ``a-2``; case-insensitive
      file systems would merge ``A`` and ``a``);
    - a video's or stream's frames are named ``<name>_<frame>``: an image named like one
      (``clip_3`` beside ``clip.mp4``) is renamed;
    - a name's first folder is never an output folder of its own (:data:`RESERVED`): images
      found in a folder ``crops/`` go to ``crops-2/``.
    """
    tops = {b.split("/")[0].casefold() for b, _ in bases if "/" in b}
    moved: dict[str, str] = {}

    def unreserved(name: str) -> str:
        top, sep, rest = name.partition("/")
        if not sep or top.casefold() not in RESERVED:
            return name
        if top not in moved:
            moved[top] = _free(top, lambda c: c.casefold() in tops)
        return f"{moved[top]}/{rest}"

    names = [unreserved(b) for b, _ in bases]
    taken: set[str] = set()
    for i, name in enumerate(names):
        names[i] = _free(name, lambda c: c.casefold() in taken)
        taken.add(names[i].casefold())
    framed = {n.casefold() for n, (_, frames) in zip(names, bases, strict=True) if frames}
    for i, (name, (_, frames)) in enumerate(zip(names, bases, strict=True)):
        if not frames and _frame_of(name, framed):
            taken.discard(name.casefold())
            names[i] = _free(name, lambda c: c.casefold() in taken or _frame_of(c, framed))
            taken.add(names[i].casefold())
    return names


def _free(name: str, clashes) -> str:
    candidate, n = name, 1
    while clashes(candidate):
        n += 1
        candidate = f"{name}-{n}"
    return candidate


def _frame_of(name: str, framed: set[str]) -> bool:
    m = re.fullmatch(r"(.*)_\d+", name)
    return bool(m) and m.group(1).casefold() in framed


# --- reading ---------------------------------------------------------------------------------


@contextlib.contextmanager
def _quiet_video() -> Iterator[None]:
    """OpenCV's and FFmpeg's own logs off: a broken input is reported once, as
    ``<source>: <problem>``, not again in their words."""
    import cv2

    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET; read at each open
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    try:
        yield
    finally:
        cv2.utils.logging.setLogLevel(level)


def open_capture(source: Source, timeout: float = DEFAULTS.stream_timeout):
    """``cv2.VideoCapture`` for a video file, a camera or an URL (FFmpeg, with ``timeout``
    seconds to open and for each read)."""
    import cv2

    with _quiet_video():
        if source.camera is not None:
            return cv2.VideoCapture(source.camera)
        if source.is_url:
            ms = int(timeout * 1000)
            params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms]
            return cv2.VideoCapture(source.location, cv2.CAP_FFMPEG, params)
        return cv2.VideoCapture(source.location)


def _what(source: Source) -> str:
    return f"camera {source.camera}" if source.camera is not None else source.location


def count_frames(sources: Sequence[Source], every: int = 1) -> int | None:
    """How many frames :func:`iter_frames` will yield, from the videos' headers (an estimate
    where a header is wrong), for progress bars; ``None`` when a stream has no end known."""
    import cv2

    total = 0
    for s in sources:
        if s.kind == STREAM:
            return None
        if s.kind == VIDEO:
            cap = open_capture(s)
            n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if cap.isOpened() else 0
            cap.release()
            total += max(-(-n // every), 1)
        else:
            total += 1
    return total


def iter_frames(
    sources: Sequence[Source], every: int = 1, timeout: float = DEFAULTS.stream_timeout
) -> Iterator[Frame]:
    """Read the sources in order: one :class:`Frame` per image, and frames 0, every,
    2·every … of each video and stream. Unreadable inputs yield a Frame with ``error`` set;
    a video some of whose frames could not be read ends with a Frame counting them (``lost``)."""
    with tempfile.TemporaryDirectory(prefix="yolo-detect-") as downloads:
        for source in sources:
            if source.has_frames:
                yield from _video_frames(source, every, timeout)
                continue
            try:
                if source.is_url:
                    image = _read_url_image(source.location, Path(downloads), timeout)
                else:
                    image = _read_image(source.location)
                yield Frame(source, None, image)
            except YoloError as e:
                yield Frame(source, None, error=str(e))


def _read_image(path: str) -> np.ndarray:
    from yolo_cli.data.image import read_image

    return read_image(path)


def _read_url_image(url: str, folder: Path, timeout: float) -> np.ndarray:
    """Download an image (at most ``LIMITS.url_image_bytes``) and read it like a file; problems
    are reported with the URL."""
    cap = LIMITS.url_image_bytes
    with _http_get(url, timeout) as response:
        try:
            data = response.read(cap + 1)
        except (OSError, TimeoutError) as e:
            raise YoloError(
                f"{url}: download failed ({getattr(e, 'strerror', None) or e})"
            ) from None
    if len(data) > cap:
        raise YoloError(f"{url}: larger than {cap >> 20} MiB, not downloaded")
    file = folder / "image"
    file.write_bytes(data)
    try:
        return _read_image(str(file))
    except YoloError as e:
        raise YoloError(str(e).replace(str(file), url, 1)) from None
    finally:
        file.unlink(missing_ok=True)


def _video_frames(source: Source, every: int, timeout: float) -> Iterator[Frame]:
    """Frames 0, every, … of a video or stream. A video file's header says how many frames it
    holds: reading goes on past frames that cannot be read (a corrupt stretch) up to that
    count, and the frames lost (those, and the rest of a file cut short) are counted at the
    end. A stream ends at the first frame it cannot give."""
    import cv2

    cap = open_capture(source, timeout)
    try:
        if not cap.isOpened():
            problem = "cannot open video" if source.kind == VIDEO else "cannot open stream"
            if source.kind == VIDEO and Path(source.location).stat().st_size == 0:
                problem = "empty file"
            yield Frame(source, None, error=f"{_what(source)}: {problem}")
            return
        fps = cap.get(cv2.CAP_PROP_FPS)
        fps = fps if 0 < fps < 1000 else None  # 0 or nonsense where the container does not say
        expected = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if source.kind == VIDEO else 0
        index, read, failed = 0, 0, 0
        while True:
            with _quiet_video():
                # grab() skips a frame without converting it; read() = grab() + retrieve()
                ok = cap.grab()
                if ok and index % every == 0:
                    ok, bgr = cap.retrieve()
            if ok:
                read, failed = read + 1, 0
                if index % every == 0:
                    yield Frame(source, index, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), fps=fps)
            elif index >= expected or failed >= DEFAULTS.video_resync_frames:
                break
            else:
                failed += 1
            index += 1
        if read == 0:
            yield Frame(source, None, error=f"{_what(source)}: no frames could be read")
        elif read < expected:
            lost = expected - read
            yield Frame(
                source,
                None,
                error=f"{source.location}: {lost} of {expected} frames could not be read "
                "(corrupt or cut short)",
                lost=lost,
            )
    finally:
        cap.release()
