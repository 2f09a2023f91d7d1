"""The bad-input corpus: every bad input, fault and hostile file a careful user may meet, built
in a temporary folder, with the outcome ``yolo`` must give (tests/test_reliability.py runs them).

A case is a function ``build(tmp, kit) -> Expect``, registered under the command it drives and
its kind (:data:`KINDS`). ``tmp`` is the case's own empty folder (the working directory while
it runs); ``kit`` (:class:`Kit`) holds what many cases share and nobody changes: a tiny
hand-set model, an image it detects one box in, a COCO dataset whose ids are not 0…N−1, tiny
training scenes, a finished one-epoch run, a small Darknet cfg + weights. No case writes a large
file: a "1 GB" entry is deflated zeros or a forged header, an oversized model a sparse file.

Every case must hold (tests/test_reliability.py checks): the exit status it expects (2 for a fatal problem, 0 with
a counted skip for a per-sample one); no traceback and no library warning in the output (no
``--debug``); one line naming the file and the problem; the outputs it names present or absent;
earlier outputs byte for byte intact; no temporary file left; and, where a wrong result was
possible, the right one.

``python -m tests.bad_inputs --table`` prints the cases by kind × command and what ``yolo`` does
with each kind (Markdown, for the README's reliability section).
"""

from __future__ import annotations

import json
import math
import shutil
import signal
import struct
import sys
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

# What the tool does with each kind of bad input (the README's reliability section).
KINDS = {
    "missing": "a path that does not exist: one line naming it, exit 2; beside other inputs "
    "(detect), skipped and counted",
    "empty": "an empty file or folder: named as empty or as holding nothing usable; exit 2, or "
    "skipped and counted beside good inputs",
    "corrupt": "bytes that are not what the name says (garbage, text for an image, not a zip, "
    "not JSON or XML): one line naming the file; a sample skipped and counted, a whole input "
    "(model, dataset, predictions file) refused with exit 2",
    "truncated": "a file cut short (image, model, weights, checkpoint): refused, never half "
    "decoded; a training or validation image is skipped and counted and the run goes on",
    "wrong type": "a folder where a file belongs, an image given as a model, a file that is no "
    "dataset: one line naming it, exit 2",
    "bomb": "an image whose header declares more pixels than the cap (YOLO_CLI_MAX_PIXELS, "
    "default Pillow's 89 M): refused from its header before decoding, skipped and counted",
    "malformed labels": "YOLO txt, VOC XML, COCO JSON entries that are unreadable, non-finite, "
    "out of range, duplicated or of the wrong type: each dropped (or its image skipped) with "
    "one line naming the file, counted in the summary; the rest of the dataset is used",
    "malformed cfg": "a Darknet cfg or names file that is malformed, out of range or does not "
    "fit its weights: one line naming the file, its line and the problem; nothing written",
    "hostile model": "a model file that costs memory or runs code (entries declaring or "
    "holding gigabytes, giant layers, too many entries, Lambda layers): refused from the "
    "archive's directory and config before Keras builds anything, in well under a second",
    "contradictory metadata": "model metadata that contradicts its network or itself (anchors "
    "[[1]], a names count that is not the head's, non-integer sizes, wrong types, a foreign "
    "network with forged metadata): refused with one line before any detection",
    "bad option": "every numeric option out of its range, NaN, infinite or of the wrong type, "
    "and options that do not go together: one line naming the option, exit 2, before any work",
    "bad output": "--out (or --save-json, a converted dataset's folder) that is a file, lies "
    "under a file, is in use or cannot be created (/proc): one line, exit 2, before any work; "
    "no folder left behind",
    "predictions": "saved detections with the dataset's own ids, negative sizes, scores outside "
    "[0, 1], absurd or NaN coordinates, unknown images or classes: matched by the dataset's "
    "ids, each senseless one skipped and counted; the score is the right one",
    "output collision": "inputs whose outputs would share a name (a.jpg and a.png, an image "
    "named like a video frame, a second run into the same --out): every output gets its own",
    "corrupt video": "a video with a corrupt stretch or none at all: lost frames counted and "
    "reported, the readable ones used",
    "disk full": "a write that fails (RLIMIT_FSIZE): one line naming the file, exit 2; no "
    "partial file, earlier outputs kept",
    "interrupt": "SIGINT during a run: exit 130, results so far kept whole, no temporary "
    "files; a killed run's temporary file removed by the resume (a training stopped by SIGINT, "
    "SIGTERM and SIGKILL at random moments and resumed bit for bit: "
    "tests/test_train_interrupts.py)",
    "resume": "a run folder that cannot be resumed (missing, truncated or malformed "
    "checkpoint, inconsistent state, changed settings): one line, exit 2, nothing trained",
}

COMMANDS = (
    "detect",
    "eval",
    "train",
    "data check",
    "data convert",
    "data synth",
    "info",
    "import",
    "export",
    "anchors",
)

NAMES = ["pedestrian", "car", "motorcycle"]
CAR = 1  # the class the kit's hand-set model finds
SIZE = 128  # the kit model's input side
COCO_IDS = [101, 205, 333]  # the kit COCO dataset's image ids: not positions
COCO_CATEGORIES = {3: "pedestrian", 7: "car", 9: "motorcycle"}  # its category ids


@dataclass(frozen=True)
class Process:
    """Run the case as a child process: ``fsize`` caps the bytes any file may grow to
    (RLIMIT_FSIZE, a full disk as the process sees it); ``signal`` is sent once ``when``
    exists."""

    fsize: int | None = None
    signal: int | None = None
    when: Path | None = None
    timeout: float = 240.0


@dataclass
class Expect:
    """What running ``yolo ARGS`` must give.

    status: the exit status. line: parts that one output line holds together (the file and
    the problem); with status 2 that line is the one ``error:`` line. also: parts of other
    lines that must show (a skipped input's own line before the final error). counted: the count the
    summary must show (``1 skipped``). exists / absent: paths after the run. intact: files
    the run must leave byte for byte as they were. check: the right result, given the whole
    output (raises AssertionError). env: extra environment. seconds / memory_mb: what the
    refusal may cost (wall time; peak Python-traced memory). process: run in a child process.
    """

    args: list
    status: int
    line: tuple[str, ...] = ()
    also: tuple[tuple[str, ...], ...] = ()
    counted: str | None = None
    exists: tuple[Path, ...] = ()
    absent: tuple[Path, ...] = ()
    intact: tuple[Path, ...] = ()
    check: Callable[[str], None] | None = None
    env: dict = field(default_factory=dict)
    seconds: float | None = None
    memory_mb: float | None = None
    process: Process | None = None

    @property
    def argv(self) -> list[str]:
        return [str(a) for a in self.args]


@dataclass(frozen=True)
class Case:
    name: str
    command: str
    kind: str
    build: Callable[[Path, Kit], Expect]
    slow: bool = False

    @property
    def id(self) -> str:
        return f"{self.command.replace(' ', '-')}:{self.name}"


CASES: list[Case] = []


def add(command: str, kind: str, name: str, build, slow: bool = False) -> None:
    assert command in COMMANDS and kind in KINDS, (command, kind)
    CASES.append(Case(name, command, kind, build, slow))


def case(command: str, kind: str, slow: bool = False):
    """Register the decorated ``build(tmp, kit)`` under its function name."""

    def register(build):
        add(command, kind, build.__name__, build, slow)
        return build

    return register


# --- files made for the cases ------------------------------------------------------------------


def write_noise(path: Path, size: tuple[int, int] = (64, 48), seed: int = 0) -> Path:
    """A noise image of ``size`` (width, height), encoded by its suffix."""
    import cv2

    noise = np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, data = cv2.imencode(path.suffix, noise)
    assert ok
    path.write_bytes(data.tobytes())
    return path


def truncate(path: Path, share: float = 0.5) -> Path:
    """Cut ``path`` to ``share`` of its bytes."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * share)])
    return path


def png_bomb(path: Path, width: int = 40000, height: int = 40000) -> Path:
    """A PNG of a few hundred bytes whose header says ``width × height`` grey pixels (a real
    bomb holds the same header over 1.6 MB of compressed zeros)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\0" * ((width + 1) * 16), 9)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )
    return path


def jpeg_bomb(path: Path, side: int = 65000) -> Path:
    """A small JPEG whose frame header (SOF0) is rewritten to say ``side × side``."""
    write_noise(path, (32, 32))
    data = bytearray(path.read_bytes())
    at = data.find(b"\xff\xc0")
    data[at + 5 : at + 9] = struct.pack(">HH", side, side)
    path.write_bytes(bytes(data))
    return path


def copy(src: Path, dst: Path) -> Path:
    """A copy of a file or folder."""
    if src.is_dir():
        return Path(shutil.copytree(src, dst))
    dst.parent.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copyfile(src, dst))


def rewrite_archive(src: Path, dst: Path, change: Callable[[str, bytes], bytes | None]) -> Path:
    """A copy of zip archive ``src`` whose entries go through ``change(name, data)`` (None
    drops the entry)."""
    with zipfile.ZipFile(src) as a, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as b:
        for info in a.infolist():
            data = change(info.filename, a.read(info))
            if data is not None:
                b.writestr(info.filename, data)
    return dst


def with_meta(src: Path, dst: Path, raw) -> Path:
    """A copy of model file ``src`` whose ``yolo_cli.json`` is ``raw`` (any JSON value, or
    text as it is)."""
    text = raw if isinstance(raw, str) else json.dumps(raw)
    return rewrite_archive(src, dst, lambda n, d: text.encode() if n == "yolo_cli.json" else d)


def declare_size(path: Path, entry: str, size: int) -> Path:
    """Rewrite the uncompressed size the archive declares for ``entry`` (local header and
    central directory), as a hostile file would."""
    data = bytearray(path.read_bytes())
    encoded = entry.encode()
    for sig, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        start = 0
        while (i := data.find(sig, start)) >= 0:
            name_at = i + (30 if sig == b"PK\x03\x04" else 46)
            if data[name_at : name_at + len(encoded)] == encoded:
                data[i + offset : i + offset + 4] = size.to_bytes(4, "little")
            start = i + 4
    path.write_bytes(bytes(data))
    return path


def coco_results(entries: list[tuple[int, list[float], float, int]]) -> str:
    """COCO results JSON: ``(image_id, [x, y, w, h], score, category_id)`` each."""
    return json.dumps(
        [{"image_id": i, "bbox": b, "score": s, "category_id": c} for i, b, s, c in entries]
    )


def voc_xml(filename: str, objects: list[tuple], size: tuple = (64, 48), extra: str = "") -> str:
    """A VOC annotation; ``objects`` are ``(name, (xmin, ymin, xmax, ymax))`` written as given."""
    body = "".join(
        f"<object><name>{name}</name><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin>"
        f"<xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>"
        for name, b in objects
    )
    return (
        f"<annotation><filename>{filename}</filename><size><width>{size[0]}</width>"
        f"<height>{size[1]}</height><depth>3</depth></size>{extra}{body}</annotation>"
    )


def voc_dataset(root: Path, xmls: dict[str, str], images: tuple[str, ...] = ()) -> Path:
    """A VOC folder: ``Annotations/<stem>.xml`` from ``xmls`` and a noise JPEG per stem (and
    per name in ``images``)."""
    for i, (stem, xml) in enumerate(xmls.items()):
        (root / "Annotations").mkdir(parents=True, exist_ok=True)
        (root / "Annotations" / f"{stem}.xml").write_text(xml)
        write_noise(root / "JPEGImages" / f"{stem}.jpg", seed=i)
    for name in images:
        write_noise(root / "JPEGImages" / name, seed=99)
    return root


def yolo_dataset(root: Path, labels: dict[str, str], names: list[str] = NAMES) -> Path:
    """A flat YOLO txt folder: ``images/<stem>.jpg`` (noise) and ``labels/<stem>.txt``."""
    (root / "labels").mkdir(parents=True, exist_ok=True)
    for i, (stem, text) in enumerate(labels.items()):
        write_noise(root / "images" / f"{stem}.jpg", seed=i)
        (root / "labels" / f"{stem}.txt").write_text(text)
    (root / "classes.txt").write_text("\n".join(names) + "\n")
    return root


GOOD_LABEL = "1 0.5 0.5 0.25 0.25\n"


def coco_dataset(root: Path, images: list[dict], annotations: list[dict], **top) -> Path:
    """``root/labels.json`` with ``images`` (noise JPEGs written for each ``file_name``) and
    ``annotations``; categories :data:`COCO_CATEGORIES` unless ``top`` says otherwise."""
    root.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(images):
        name = image.get("file_name")
        if isinstance(name, str) and not (root / name).exists():
            write_noise(root / name, seed=i)
    data = {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": k, "name": v} for k, v in COCO_CATEGORIES.items()],
        **top,
    }
    path = root / "labels.json"
    path.write_text(json.dumps(data))
    return path


def coco_image(i: int, name: str | None = None, **kw) -> dict:
    return {"id": i, "file_name": name or f"im{i}.jpg", "width": 64, "height": 48, **kw}


def coco_box(image_id, bbox, cat=7, k: int = 1, **kw) -> dict:
    return {"id": k, "image_id": image_id, "category_id": cat, "bbox": bbox, "iscrowd": 0, **kw}


# --- what the cases share ----------------------------------------------------------------------


class Kit:
    """Files many cases read and none changes, each made on first use under ``root``."""

    def __init__(self, root: Path):
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    @cached_property
    def model(self) -> Path:
        """The hand-set network (tests/rendered.py): finds a white 16-px patch as a car."""
        from rendered import save_hand_model

        return save_hand_model(self.root / "model.keras", NAMES, CAR, resizable=True)

    @cached_property
    def liar_model(self) -> Path:
        """:attr:`model` with a 1 GiB config.json (deflated to ~1 MB) declared as 1000 bytes."""
        return deflated_giant(self.model, self.root / "liar.keras")

    @cached_property
    def image(self) -> Path:
        """A 128-px image the model finds one car in."""
        from rendered import patch_scene, write_rgb

        image, _ = patch_scene([(1, 1)])
        return write_rgb(self.root / "good.png", image)

    @cached_property
    def coco(self) -> Path:
        """A COCO dataset of three images, one car each (exactly what the model finds), image
        ids :data:`COCO_IDS` and category ids :data:`COCO_CATEGORIES`; its ``labels.json``."""
        from rendered import patch_scene, write_coco

        cells = [(1, 1), (2, 0), (0, 3)]
        images = []
        for k, cell in enumerate(cells):
            image, boxes = patch_scene([cell])
            images.append((f"scene{k}.png", image, boxes, [7]))
        return write_coco(self.root / "coco", images, COCO_CATEGORIES, COCO_IDS)

    @cached_property
    def coco_truth(self) -> list[tuple[int, list[float]]]:
        """``(image_id, [x, y, w, h])`` of every ground-truth box of :attr:`coco`."""
        data = json.loads(self.coco.read_text())
        return [(a["image_id"], a["bbox"]) for a in data["annotations"]]

    @cached_property
    def scenes(self) -> Path:
        """Tiny synthetic training scenes (64 px, train/val/test)."""
        from train_helpers import write_tiny_scenes

        return write_tiny_scenes(self.root / "scenes", n=16)

    @cached_property
    def run(self) -> Path:
        """A finished run of one epoch of one step on :attr:`scenes`."""
        from train_helpers import tiny_config

        from yolo_cli.train import train

        out = self.root / "run"
        train(tiny_config(self.scenes, out, epochs=1, max_steps=1))
        return out

    @cached_property
    def darknet(self) -> tuple[Path, Path]:
        """A small Darknet cfg and its weights (conv + BN, conv, a [yolo] head of 2 anchors)."""
        cfg = self.root / "tiny.cfg"
        cfg.write_text(DARKNET_CFG)
        rng = np.random.default_rng(0)
        values = [
            np.zeros(8),  # conv 1 biases (BatchNorm beta)
            np.ones(8),  # scales
            np.zeros(8),  # rolling means
            np.ones(8),  # rolling variances
            rng.normal(0, 0.2, 8 * 3 * 3 * 3),
            np.zeros(14),  # conv 2 biases
            rng.normal(0, 0.2, 14 * 8),
        ]
        weights = self.root / "tiny.weights"
        weights.write_bytes(DARKNET_HEADER + np.concatenate(values).astype("<f4").tobytes())
        return cfg, weights

    @cached_property
    def video(self) -> Path:
        """A 10-frame MJPEG AVI of the kit image."""
        import cv2
        from rendered import patch_scene

        image, _ = patch_scene([(1, 1)])
        path = self.root / "clip.avi"
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (SIZE, SIZE))
        for _ in range(10):
            writer.write(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        writer.release()
        return path


DARKNET_CFG = """[net]
width=64
height=64
channels=3

[convolutional]
filters=8
size=3
stride=2
pad=1
batch_normalize=1
activation=leaky

[maxpool]
size=2
stride=2

[convolutional]
filters=14
size=1
stride=1
activation=linear

[yolo]
mask=0,1
anchors=10,14, 23,27
classes=2
num=2
"""
DARKNET_HEADER = np.array([0, 2, 0], "<i4").tobytes() + np.array([1000], "<u8").tobytes()
DARKNET_FLOATS = 8 * 4 + 8 * 27 + 14 + 14 * 8


# --- detect ------------------------------------------------------------------------------------


def detect_args(tmp: Path, kit: Kit, *sources, extra=(), model=None) -> list:
    return [
        "detect",
        *sources,
        "--model",
        model or kit.model,
        "--out",
        tmp / "out",
        *extra,
    ]


def skipped_beside_good(tmp: Path, kit: Kit, bad: Path, says: str) -> Expect:
    """``bad`` beside the good image: skipped with one line, counted; the good one done."""
    good = copy(kit.image, tmp / "good.png")
    return Expect(
        detect_args(tmp, kit, good, bad, extra=["--save-txt"]),
        0,
        line=(str(bad), says),
        counted="1 skipped",
        exists=(tmp / "out" / "good.png", tmp / "out" / "labels" / "good.txt"),
        check=lambda out: _assert_in("1 car", out),
    )


def _assert_in(part: str, text: str) -> None:
    assert part in text, f"{part!r} not in the output"


def alone(tmp: Path, kit: Kit, bad: Path, says: str) -> Expect:
    """``bad`` alone: its line, then exit 2 with nothing processed; no run folder left."""
    return Expect(
        detect_args(tmp, kit, bad),
        2,
        also=((str(bad), says),),
        absent=(tmp / "out",),
    )


@case("detect", "missing")
def missing_image_alone(tmp, kit):
    return alone(tmp, kit, tmp / "nope.jpg", "no such file")


@case("detect", "missing")
def missing_image_beside_good(tmp, kit):
    return skipped_beside_good(tmp, kit, tmp / "nope.jpg", "no such file")


@case("detect", "missing")
def missing_folder(tmp, kit):
    return alone(tmp, kit, tmp / "nofolder", "no such file")


@case("detect", "missing")
def glob_matching_nothing(tmp, kit):
    return alone(tmp, kit, tmp / "*.jpg", "*.jpg")


@case("detect", "missing")
def list_file_naming_missing_images(tmp, kit):
    good = copy(kit.image, tmp / "good.png")
    listing = tmp / "list.txt"
    listing.write_text(f"{good}\n{tmp / 'gone.jpg'}\n")
    return Expect(
        detect_args(tmp, kit, listing),
        0,
        line=(str(tmp / "gone.jpg"), "no such file"),
        counted="1 skipped",
        exists=(tmp / "out" / "good.png",),
    )


@case("detect", "empty")
def empty_image_alone(tmp, kit):
    bad = tmp / "empty.jpg"
    bad.write_bytes(b"")
    return alone(tmp, kit, bad, "empty")


@case("detect", "empty")
def empty_image_beside_good(tmp, kit):
    bad = tmp / "empty.png"
    bad.write_bytes(b"")
    return skipped_beside_good(tmp, kit, bad, "empty")


@case("detect", "empty")
def empty_folder(tmp, kit):
    (tmp / "nothing").mkdir()
    return alone(tmp, kit, tmp / "nothing", "nothing")


@case("detect", "empty")
def empty_list_file(tmp, kit):
    listing = tmp / "list.txt"
    listing.write_text("\n\n")
    return alone(tmp, kit, listing, "names no sources")


@case("detect", "empty")
def empty_video(tmp, kit):
    bad = tmp / "clip.mp4"
    bad.write_bytes(b"")
    return skipped_beside_good(tmp, kit, bad, "empty")


@case("detect", "corrupt")
def garbage_jpeg(tmp, kit):
    bad = tmp / "garbage.jpg"
    bad.write_bytes(np.random.default_rng(1).bytes(5000))
    return skipped_beside_good(tmp, kit, bad, "not a readable image")


@case("detect", "corrupt")
def text_named_png(tmp, kit):
    bad = tmp / "notes.png"
    bad.write_text("these are notes, not pixels\n" * 20)
    return skipped_beside_good(tmp, kit, bad, "not a readable image")


@case("detect", "corrupt")
def garbage_video(tmp, kit):
    bad = tmp / "clip.mp4"
    bad.write_bytes(np.random.default_rng(2).bytes(20000))
    return skipped_beside_good(tmp, kit, bad, str(bad))


@case("detect", "corrupt")
def image_with_broken_header(tmp, kit):
    bad = write_noise(tmp / "header.png")
    data = bytearray(bad.read_bytes())
    data[16:24] = b"\xff" * 8  # IHDR width and height
    bad.write_bytes(bytes(data))
    return skipped_beside_good(tmp, kit, bad, str(bad))


@case("detect", "truncated")
def truncated_jpeg(tmp, kit):
    return skipped_beside_good(
        tmp, kit, truncate(write_noise(tmp / "cut.jpg")), "not a readable image"
    )


@case("detect", "truncated")
def truncated_png(tmp, kit):
    return skipped_beside_good(
        tmp, kit, truncate(write_noise(tmp / "cut.png")), "not a readable image"
    )


@case("detect", "truncated")
def truncated_webp(tmp, kit):
    return skipped_beside_good(
        tmp, kit, truncate(write_noise(tmp / "cut.webp"), 0.3), "not a readable image"
    )


@case("detect", "truncated")
def truncated_tiff(tmp, kit):
    return skipped_beside_good(
        tmp, kit, truncate(write_noise(tmp / "cut.tif")), "not a readable image"
    )


@case("detect", "wrong type")
def folder_named_like_an_image(tmp, kit):
    (tmp / "photo.jpg").mkdir()
    return alone(tmp, kit, tmp / "photo.jpg", "a folder without images")


@case("detect", "wrong type")
def unsupported_suffix(tmp, kit):
    bad = tmp / "notes.docx"
    bad.write_text("hello")
    return alone(tmp, kit, bad, "not a readable image")


@case("detect", "bomb")
def png_bomb_beside_good(tmp, kit):
    return skipped_beside_good(tmp, kit, png_bomb(tmp / "bomb.png"), "over the cap")


@case("detect", "bomb")
def jpeg_bomb_beside_good(tmp, kit):
    return skipped_beside_good(tmp, kit, jpeg_bomb(tmp / "bomb.jpg"), "over the cap")


@case("detect", "bomb")
def bomb_alone(tmp, kit):
    return alone(tmp, kit, png_bomb(tmp / "bomb.png"), "over the cap")


@case("detect", "bomb")
def pixel_cap_lowered(tmp, kit):
    expect = skipped_beside_good(tmp, kit, write_noise(tmp / "big.png", (200, 100)), "over the cap")
    expect.env = {"YOLO_CLI_MAX_PIXELS": "19999"}
    return expect


@case("detect", "bad option")
def pixel_cap_not_a_number(tmp, kit):
    good = copy(kit.image, tmp / "good.png")
    return Expect(
        detect_args(tmp, kit, good),
        2,
        line=("YOLO_CLI_MAX_PIXELS", "lots"),
        env={"YOLO_CLI_MAX_PIXELS": "lots"},
        absent=(tmp / "out",),
    )


@case("detect", "corrupt video")
def video_with_a_corrupt_stretch(tmp, kit):
    """Frames 3…5 of a 10-frame MJPEG AVI zeroed (the container intact): 3 lost and
    counted, the 7 others read, those after the stretch too."""
    video = copy(kit.video, tmp / "clip.avi")
    data = bytearray(video.read_bytes())
    starts = [i for i in range(len(data) - 1) if data[i : i + 2] == b"\xff\xd8"]
    for k in (3, 4, 5):
        end = starts[k + 1] - 8  # the next frame's chunk header stays
        data[starts[k] : end] = bytes(end - starts[k])
    video.write_bytes(bytes(data))
    labels = tmp / "out" / "labels"

    def check(out: str) -> None:
        summary = out.strip().splitlines()[-1]
        assert "1 video (7 frames, 3 lost)" in summary, summary
        assert sorted(p.name for p in labels.iterdir()) == [
            f"clip_{i}.txt" for i in (0, 1, 2, 6, 7, 8, 9)
        ]

    return Expect(
        detect_args(tmp, kit, video, extra=["--save-txt"]),
        0,
        line=(str(video), "3 of 10 frames"),
        check=check,
        exists=(tmp / "out" / "clip.mp4",),
    )


@case("detect", "corrupt video")
def video_cut_short(tmp, kit):
    """The last frames of an AVI cut off: the frames before the cut are read, the rest
    counted as lost."""
    video = truncate(copy(kit.video, tmp / "clip.avi"), 0.85)

    def check(out: str) -> None:
        summary = out.strip().splitlines()[-1]
        assert "1 video (" in summary and " lost)" in summary, summary

    return Expect(
        detect_args(tmp, kit, video),
        0,
        line=(str(video), "of 10 frames"),
        check=check,
        exists=(tmp / "out" / "clip.mp4",),
    )


@case("detect", "corrupt video")
def video_header_only(tmp, kit):
    video = truncate(copy(kit.video, tmp / "clip.avi"), 0.3)
    return alone(tmp, kit, video, "cannot open video")


@case("detect", "output collision")
def same_stem_different_suffix(tmp, kit):
    a = copy(kit.image, tmp / "a.png")
    b = copy(kit.image, tmp / "a.jpg")
    labels = tmp / "out" / "labels"
    return Expect(
        detect_args(tmp, kit, a, b, extra=["--save-txt"]),
        0,
        exists=(
            labels / "a.txt",
            labels / "a-2.txt",
            tmp / "out" / "a.png",
            tmp / "out" / "a-2.jpg",
        ),
    )


@case("detect", "output collision")
def image_named_like_a_video_frame(tmp, kit):
    video = copy(kit.video, tmp / "clip.avi")
    image = copy(kit.image, tmp / "clip_0.png")
    labels = tmp / "out" / "labels"

    def check(out: str) -> None:
        txt = sorted(p.name for p in labels.iterdir())
        assert len(txt) == 11 and "clip_0-2.txt" in txt, txt

    return Expect(
        detect_args(tmp, kit, video, image, extra=["--save-txt"]),
        0,
        exists=(labels / "clip_0.txt", labels / "clip_9.txt"),
        check=check,
    )


@case("detect", "output collision")
def second_run_into_the_same_out(tmp, kit):
    first = tmp / "out" / "good.png"
    copy(kit.image, first)
    (tmp / "out" / "labels").mkdir()
    (tmp / "out" / "labels" / "good.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    image = copy(kit.image, tmp / "good.png")
    return Expect(
        detect_args(tmp, kit, image, extra=["--save-txt"]),
        0,
        intact=(first, tmp / "out" / "labels" / "good.txt"),
        exists=(tmp / "out2" / "good.png", tmp / "out2" / "labels" / "good.txt"),
        check=lambda out: _assert_in(f"results in {tmp / 'out2'}", out),
    )


@case("detect", "output collision")
def images_in_subfolders_with_one_name(tmp, kit):
    copy(kit.image, tmp / "in" / "a" / "x.png")
    copy(kit.image, tmp / "in" / "b" / "x.png")
    copy(kit.image, tmp / "in" / "x.png")
    labels = tmp / "out" / "labels"

    def check(out: str) -> None:
        assert len(list(labels.rglob("*.txt"))) == 3

    return Expect(
        detect_args(tmp, kit, tmp / "in", extra=["--save-txt"]),
        0,
        exists=(labels / "x.txt",),
        check=check,
    )


@case("detect", "output collision")
def folder_named_like_an_output_folder(tmp, kit):
    copy(kit.image, tmp / "in" / "labels" / "x.png")
    copy(kit.image, tmp / "in" / "x.png")
    out = tmp / "out"

    def check(text: str) -> None:
        assert sorted(p.name for p in (out / "labels").iterdir()) == ["labels-2", "x.txt"]

    return Expect(
        detect_args(tmp, kit, tmp / "in", extra=["--save-txt"]),
        0,
        exists=(out / "labels-2" / "x.png", out / "labels" / "labels-2" / "x.txt"),
        check=check,
    )


@case("detect", "output collision")
def names_with_newlines_tabs_and_emoji(tmp, kit):
    """File names a shell would mangle keep their outputs, each under its own name."""
    names = ["new\nline", "tab\tü 😀"]
    for name in names:
        copy(kit.image, tmp / "in" / f"{name}.png")
    out = tmp / "out"
    return Expect(
        detect_args(tmp, kit, tmp / "in", extra=["--save-txt", "--save-crop"]),
        0,
        exists=tuple(p for n in names for p in (out / f"{n}.png", out / "labels" / f"{n}.txt")),
        check=lambda text: _assert_in("2 images; 2 car", text),
    )


@case("detect", "wrong type")
def folder_holding_a_link_to_itself(tmp, kit):
    """A symbolic link loop inside a source folder is not followed round and round."""
    folder = tmp / "in"
    copy(kit.image, folder / "a.png")
    (folder / "loop").symlink_to(folder)
    return Expect(
        detect_args(tmp, kit, folder, extra=["--save-txt"]),
        0,
        exists=(tmp / "out" / "labels" / "a.txt",),
        check=lambda text: _assert_in("1 image; 1 car", text),
    )


@case("detect", "wrong type")
def list_file_naming_itself(tmp, kit):
    listing = tmp / "list.txt"
    listing.write_text(f"{listing}\n{copy(kit.image, tmp / 'good.png')}\n")
    return Expect(
        detect_args(tmp, kit, listing),
        0,
        line=(str(listing), "the list includes itself"),
        counted="1 skipped",
        exists=(tmp / "out" / "good.png",),
    )


def _bad_out(tmp: Path, kit: Kit, out: Path, says: str, command: str) -> Expect:
    """``command`` with ``--out out`` (a file, under a file, …): one line before any work."""
    args = {
        "detect": lambda: ["detect", copy(kit.image, tmp / "good.png"), "--model", kit.model],
        "eval": lambda: ["eval", "--data", kit.coco, "--model", kit.model],
        "train": lambda: ["train", "--data", tmp / "no-dataset"],
    }[command]()
    return Expect([*args, "--out", out], 2, line=(str(out), says), absent=(tmp / "runs",))


def _file(tmp: Path) -> Path:
    path = tmp / "file.txt"
    path.write_text("keep me\n")
    return path


for _command in ("detect", "eval", "train"):

    def _out_is_a_file(tmp, kit, command=_command):
        expect = _bad_out(tmp, kit, _file(tmp), "is a file", command)
        expect.intact = (tmp / "file.txt",)
        return expect

    def _out_under_a_file(tmp, kit, command=_command):
        return _bad_out(tmp, kit, _file(tmp) / "run", "lies under the file", command)

    def _out_in_proc(tmp, kit, command=_command):
        return _bad_out(tmp, kit, Path("/proc/yolo-run"), "cannot create", command)

    add(_command, "bad output", "out_is_a_file", _out_is_a_file)
    add(_command, "bad output", "out_under_a_file", _out_under_a_file)
    add(_command, "bad output", "out_in_proc", _out_in_proc)


@case("detect", "bad output")
def save_json_into_a_folder(tmp, kit):
    (tmp / "results").mkdir()
    good = copy(kit.image, tmp / "good.png")
    return Expect(
        detect_args(tmp, kit, good, extra=["--save-json", tmp / "results"]),
        2,
        line=(str(tmp / "results"), "folder"),
        absent=(tmp / "out",),
    )


@case("detect", "bad output")
def save_json_under_a_file(tmp, kit):
    good = copy(kit.image, tmp / "good.png")
    target = _file(tmp) / "r.json"
    return Expect(
        detect_args(tmp, kit, good, extra=["--save-json", target]),
        2,
        line=(str(target), "is a file"),
        absent=(tmp / "out",),
    )


@case("detect", "bad output")
def save_json_in_proc(tmp, kit):
    good = copy(kit.image, tmp / "good.png")
    return Expect(
        detect_args(tmp, kit, good, extra=["--save-json", "/proc/yolo.json"]),
        2,
        line=("/proc/yolo.json", "cannot write"),
        absent=(tmp / "out",),
    )


DETECT_BAD_OPTIONS = [
    ("--conf", "nan"),
    ("--conf", "-0.1"),
    ("--conf", "1.5"),
    ("--nms-iou", "nan"),
    ("--nms-iou", "2"),
    ("--max-det", "0"),
    ("--img-size", "0"),
    ("--img-size", "-32"),
    ("--img-size", "100"),
    ("--img-size", "65536"),
    ("--img-size", "nan"),
    ("--batch", "0"),
    ("--every", "0"),
    ("--line-width", "0"),
    ("--device", "tpu"),
    ("--method", "magic"),
]


def _bad_option(
    command_args: Callable[[Path, Kit], list], option: str, value: str, says: tuple = ()
):
    """``command_args`` with ``option value`` added: refused in one line naming the option and
    the value (or ``says``), before any work."""

    def build(tmp, kit):
        return Expect(
            [*command_args(tmp, kit), option, value],
            2,
            line=says or ((value,) if option == "--split" else (option, value)),
            absent=(tmp / "out", tmp / "runs"),
        )

    return build


def _detect_base(tmp, kit):
    return detect_args(tmp, kit, copy(kit.image, tmp / "good.png"))


for _option, _value in DETECT_BAD_OPTIONS:
    add(
        "detect",
        "bad option",
        f"{_option[2:]}_{_value}",
        _bad_option(_detect_base, _option, _value),
    )


@case("detect", "bad option")
def unknown_class_name(tmp, kit):
    good = copy(kit.image, tmp / "good.png")
    return Expect(
        detect_args(tmp, kit, good, extra=["--classes", "giraffe"]),
        2,
        line=(str(kit.model), "giraffe"),
        absent=(tmp / "out",),
    )


@case("detect", "bad option")
def class_id_out_of_range(tmp, kit):
    good = copy(kit.image, tmp / "good.png")
    return Expect(
        detect_args(tmp, kit, good, extra=["--classes", "7"]),
        2,
        line=(str(kit.model), "'7'"),
        absent=(tmp / "out",),
    )


@case("detect", "bad option")
def img_size_for_a_window_model(tmp, kit):
    good = copy(kit.image, tmp / "good.png")
    return Expect(
        detect_args(tmp, kit, good, extra=["--method", "window", "--img-size", "64"]),
        2,
        line=(str(kit.model),),
        absent=(tmp / "out",),
    )


# --- model files: hostile, corrupt, contradictory (detect, info, eval, export) -----------------

GOOD_META = {
    "kind": "yolo",
    "names": NAMES,
    "img_size": SIZE,
    "heads": [{"stride": 32, "anchors": [[20.0, 24.0], [60.0, 50.0]]}],
}


def lambda_model(path: Path) -> Path:
    """A Keras model holding code (a Lambda layer), with valid yolo-cli metadata."""
    import keras

    inputs = keras.Input((SIZE, SIZE, 3))
    outputs = keras.layers.Lambda(lambda x: x * 2.0)(inputs)
    keras.Model(inputs, outputs).save(path)
    with zipfile.ZipFile(path, "a") as z:
        z.writestr("yolo_cli.json", json.dumps(GOOD_META))
    return path


def foreign_model(path: Path) -> Path:
    """Someone else's Keras network with forged yolo-cli metadata."""
    import keras

    keras.Sequential([keras.Input((SIZE, SIZE, 3)), keras.layers.Conv2D(2, 3)]).save(path)
    with zipfile.ZipFile(path, "a") as z:
        z.writestr("yolo_cli.json", json.dumps(GOOD_META))
    return path


def plain_keras(path: Path) -> Path:
    import keras

    keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]).save(path)
    return path


def deflated_giant(model: Path, path: Path, entry: str = "config.json") -> Path:
    """``model`` with ``entry`` replaced by 1 GiB of spaces, deflated to ~1 MB and declared as
    1000 bytes."""
    with zipfile.ZipFile(model) as src, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for info in src.infolist():
            if info.filename != entry:
                z.writestr(info.filename, src.read(info))
        with z.open(entry, "w", force_zip64=True) as f:
            block = b" " * (1 << 20)
            for _ in range(1024):
                f.write(block)
    return declare_size(path, entry, 1000)


def giant_layer(kit: Kit, path: Path) -> Path:
    def change(name, data):
        if name != "config.json":
            return data
        config = json.loads(data)
        config["config"]["layers"][2]["config"]["filters"] = 10**9
        return json.dumps(config).encode()

    return rewrite_archive(kit.model, path, change)


def many_entries(kit: Kit, path: Path) -> Path:
    rewrite_archive(kit.model, path, lambda n, d: d)
    with zipfile.ZipFile(path, "a") as z:
        for i in range(100):
            z.writestr(f"junk/{i}.bin", b"x")
    return path


def sparse_giant(path: Path) -> Path:
    """A 2 GiB sparse file (no disk used) named like a model."""
    with open(path, "wb") as f:
        f.truncate(2 << 30)
    return path


def nan_weights(kit: Kit, path: Path) -> Path:
    """The kit model with one weight set to NaN."""
    from yolo_cli.modelfile import load_model, save_model

    model, meta = load_model(kit.model)
    weights = model.get_weights()
    weights[0].flat[0] = np.nan
    model.set_weights(weights)
    return save_model(model, path, meta)


# (name, kind, build(tmp, kit) -> model path, the problem the line names)
MODEL_FILES = [
    ("missing", "missing", lambda tmp, kit: tmp / "none.keras", "not found"),
    ("empty", "empty", lambda tmp, kit: _bytes(tmp / "empty.keras", b""), "not a Keras model"),
    (
        "garbage",
        "corrupt",
        lambda tmp, kit: _bytes(tmp / "junk.keras", np.random.default_rng(4).bytes(3000)),
        "not a Keras model",
    ),
    (
        "truncated",
        "truncated",
        lambda tmp, kit: truncate(copy(kit.model, tmp / "cut.keras")),
        "not a Keras model",
    ),
    ("folder", "wrong type", lambda tmp, kit: _folder(tmp / "model.keras"), "model.keras"),
    ("image", "wrong type", lambda tmp, kit: copy(kit.image, tmp / "photo.png"), "not a Keras"),
    (
        "plain_keras",
        "wrong type",
        lambda tmp, kit: plain_keras(tmp / "plain.keras"),
        "not a yolo-cli model",
    ),
    ("lambda", "hostile model", lambda tmp, kit: lambda_model(tmp / "code.keras"), "Lambda"),
    (
        "entry_declares_3gb",
        "hostile model",
        lambda tmp, kit: declare_size(
            copy(kit.model, tmp / "huge.keras"), "yolo_cli.json", 3 << 30
        ),
        "3,221,225,472",
    ),
    (
        "weights_declare_3gb",
        "hostile model",
        lambda tmp, kit: declare_size(
            copy(kit.model, tmp / "huge.keras"), "model.weights.h5", 3 << 30
        ),
        "3,221,225,472",
    ),
    (
        "config_1gb_deflated",
        "hostile model",
        lambda tmp, kit: copy(kit.liar_model, tmp / "liar.keras"),
        "config.json",
    ),
    (
        "config_declares_1gb",
        "hostile model",
        lambda tmp, kit: declare_size(copy(kit.model, tmp / "huge.keras"), "config.json", 1 << 30),
        "1,073,741,824",
    ),
    (
        "giant_layer",
        "hostile model",
        lambda tmp, kit: giant_layer(kit, tmp / "giant.keras"),
        "filters=1000000000",
    ),
    (
        "many_entries",
        "hostile model",
        lambda tmp, kit: many_entries(kit, tmp / "many.keras"),
        "entries",
    ),
    ("sparse_2gb", "hostile model", lambda tmp, kit: sparse_giant(tmp / "big.keras"), "cap"),
    (
        "anchors_1",
        "contradictory metadata",
        lambda tmp, kit: with_meta(
            kit.model, tmp / "m.keras", {**GOOD_META, "heads": [{"stride": 32, "anchors": [[1]]}]}
        ),
        "anchors",
    ),
    (
        "names_count",
        "contradictory metadata",
        lambda tmp, kit: with_meta(kit.model, tmp / "m.keras", {**GOOD_META, "names": ["a", "b"]}),
        "2 classes",
    ),
    (
        "img_size_fraction",
        "contradictory metadata",
        lambda tmp, kit: with_meta(kit.model, tmp / "m.keras", {**GOOD_META, "img_size": 128.5}),
        "img_size",
    ),
    (
        "img_size_string",
        "contradictory metadata",
        lambda tmp, kit: with_meta(kit.model, tmp / "m.keras", {**GOOD_META, "img_size": "128"}),
        "img_size",
    ),
    (
        "img_size_other",
        "contradictory metadata",
        lambda tmp, kit: with_meta(kit.model, tmp / "m.keras", {**GOOD_META, "img_size": 256}),
        "network input",
    ),
    (
        "names_a_string",
        "contradictory metadata",
        lambda tmp, kit: with_meta(kit.model, tmp / "m.keras", {**GOOD_META, "names": "a,b,c"}),
        "names",
    ),
    (
        "stride_not_dividing",
        "contradictory metadata",
        lambda tmp, kit: with_meta(
            kit.model,
            tmp / "m.keras",
            {**GOOD_META, "heads": [{"stride": 48, "anchors": [[9, 9]]}]},
        ),
        "stride 48",
    ),
    (
        "meta_not_json",
        "corrupt",
        lambda tmp, kit: with_meta(kit.model, tmp / "m.keras", "{not json"),
        "corrupt model metadata",
    ),
    (
        "meta_a_list",
        "contradictory metadata",
        lambda tmp, kit: with_meta(kit.model, tmp / "m.keras", [1, 2]),
        "not a JSON object",
    ),
    (
        "meta_missing_fields",
        "contradictory metadata",
        lambda tmp, kit: with_meta(kit.model, tmp / "m.keras", {"kind": "yolo"}),
        "lacks",
    ),
    (
        "anchors_nan",
        "contradictory metadata",
        lambda tmp, kit: with_meta(
            kit.model,
            tmp / "m.keras",
            {**GOOD_META, "heads": [{"stride": 32, "anchors": [[math.nan, 3], [4, 5]]}]},
        ),
        "anchors",
    ),
    (
        "conf_out_of_range",
        "contradictory metadata",
        lambda tmp, kit: with_meta(kit.model, tmp / "m.keras", {**GOOD_META, "conf": 7}),
        "conf",
    ),
    (
        "foreign_network",
        "contradictory metadata",
        lambda tmp, kit: foreign_model(tmp / "foreign.keras"),
        "output 0 has shape",
    ),
    (
        "nan_weights",
        "corrupt",
        lambda tmp, kit: nan_weights(kit, tmp / "nan.keras"),
        "NaN",
    ),
    (
        "fake_tflite",
        "corrupt",
        lambda tmp, kit: _bytes(tmp / "m.tflite", b"TFL3" + bytes(200)),
        "m.tflite",
    ),
    (
        "fake_onnx",
        "corrupt",
        lambda tmp, kit: _bytes(tmp / "m.onnx", np.random.default_rng(5).bytes(500)),
        "m.onnx",
    ),
    (
        "empty_saved_model",
        "wrong type",
        lambda tmp, kit: _folder(tmp / "m_saved_model"),
        "SavedModel",
    ),
]

HOSTILE_COST = dict(seconds=1.0, memory_mb=100.0)  # issue 17: "within a second, under 100 MB"


def _bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _folder(path: Path) -> Path:
    path.mkdir(parents=True)
    return path


def _model_case(command: str, make, says: str, kind: str):
    def build(tmp, kit):
        model = make(tmp, kit)
        if command == "detect":
            args = detect_args(tmp, kit, copy(kit.image, tmp / "good.png"), model=model)
        elif command == "info":
            args = ["info", model]
        elif command == "eval":
            args = ["eval", "--data", kit.coco, "--model", model, "--out", tmp / "out"]
        else:
            args = ["export", model, "--format", "onnx", "--out", tmp / "exported.onnx"]
        cost = HOSTILE_COST if kind == "hostile model" else {}
        return Expect(
            args,
            2,
            line=(str(model), says),
            absent=(tmp / "out", tmp / "runs", tmp / "exported.onnx"),
            **cost,
        )

    return build


_MODEL_COMMANDS = {
    "info": {n for n, *_ in MODEL_FILES},
    "detect": {
        "missing",
        "garbage",
        "truncated",
        "plain_keras",
        "lambda",
        "entry_declares_3gb",
        "config_1gb_deflated",
        "giant_layer",
        "anchors_1",
        "names_count",
        "img_size_fraction",
        "names_a_string",
        "foreign_network",
        "nan_weights",
        "fake_tflite",
    },
    "eval": {"names_count", "weights_declare_3gb", "lambda", "empty", "nan_weights"},
    "export": {"missing", "truncated", "foreign_network", "sparse_2gb"},
}
for _name, _kind, _make, _says in MODEL_FILES:
    for _command, _names in _MODEL_COMMANDS.items():
        if _name in _names:
            add(_command, _kind, f"model_{_name}", _model_case(_command, _make, _says, _kind))


# --- eval --------------------------------------------------------------------------------------


def eval_args(tmp: Path, data: Path, *extra) -> list:
    return ["eval", "--data", data, "--out", tmp / "out", *extra]


def metric(tmp: Path, key: str = "mAP@0.5") -> float:
    return json.loads((tmp / "out" / "metrics.json").read_text())[key]


def predictions_case(tmp: Path, kit: Kit, bad: list, says: str) -> Expect:
    """A COCO results file of the kit's perfect predictions plus ``bad`` senseless entries
    (``(image_id, bbox, score, category_id)`` tuples or raw objects): each skipped with one
    line and counted; the score stays 1."""
    path = tmp / "results.json"
    rows = json.loads(coco_results([(i, b, 0.9, 7) for i, b in kit.coco_truth]))
    rows += [e if isinstance(e, dict) else json.loads(coco_results([e]))[0] for e in bad]
    path.write_text(json.dumps(rows))

    def check(out: str) -> None:
        assert metric(tmp) == 1.0, out
        _assert_in(f"{len(bad)} problems", out)

    return Expect(
        eval_args(tmp, kit.coco, "--predictions", path),
        0,
        line=(str(path), says),
        check=check,
        exists=(tmp / "out" / "metrics.json",),
    )


@case("eval", "predictions")
def coco_results_with_the_dataset_s_own_ids(tmp, kit):
    """Perfect predictions by integer image ids 101, 205, 333 (not positions): mAP 1, as
    pycocotools scores them."""
    path = tmp / "results.json"
    path.write_text(coco_results([(i, b, 0.9, 7) for i, b in kit.coco_truth]))

    def check(out: str) -> None:
        assert metric(tmp) == 1.0
        assert pycocotools_map50(kit.coco, path) == 1.0

    return Expect(eval_args(tmp, kit.coco, "--predictions", path), 0, check=check)


def pycocotools_map50(gt: Path, results: Path) -> float:
    """mAP@0.5 by pycocotools (the reference for COCO results files)."""
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        truth = COCO(str(gt))
        found = truth.loadRes(str(results))
        e = COCOeval(truth, found, "bbox")
        e.evaluate()
        e.accumulate()
        e.summarize()
    return round(float(e.stats[1]), 6)


@case("eval", "predictions")
def coco_results_shifted_by_half_a_box(tmp, kit):
    """Each box moved by half its width (IoU 1/3): AP 0 at IoU 0.5, as pycocotools says."""
    path = tmp / "results.json"
    path.write_text(
        coco_results([(i, [b[0] + b[2] / 2, *b[1:]], 0.9, 7) for i, b in kit.coco_truth])
    )

    def check(out: str) -> None:
        assert metric(tmp) == 0.0 == pycocotools_map50(kit.coco, path)

    return Expect(eval_args(tmp, kit.coco, "--predictions", path), 0, check=check)


@case("eval", "predictions")
def negative_width(tmp, kit):
    return predictions_case(tmp, kit, [(101, [10, 10, -5, 8], 0.8, 7)], "width")


@case("eval", "predictions")
def score_above_one(tmp, kit):
    return predictions_case(tmp, kit, [(101, [60, 60, 5, 8], 1.5, 7)], "score")


@case("eval", "predictions")
def negative_score(tmp, kit):
    return predictions_case(tmp, kit, [(101, [60, 60, 5, 8], -0.2, 7)], "score")


@case("eval", "predictions")
def absurd_coordinates(tmp, kit):
    return predictions_case(tmp, kit, [(205, [1e12, 5, 10, 10], 0.8, 7)], "outside")


@case("eval", "predictions")
def nan_coordinates(tmp, kit):
    return predictions_case(tmp, kit, [(205, [math.nan, 5, 10, 10], 0.8, 7)], "bbox")


@case("eval", "predictions")
def nan_score(tmp, kit):
    return predictions_case(tmp, kit, [(205, [5, 5, 10, 10], math.nan, 7)], "score")


@case("eval", "predictions")
def unknown_image_id(tmp, kit):
    return predictions_case(tmp, kit, [(0, [5, 5, 10, 10], 0.5, 7)], "no image 0")


@case("eval", "predictions")
def unknown_category_id(tmp, kit):
    return predictions_case(tmp, kit, [(205, [5, 5, 10, 10], 0.5, 42)], "42")


@case("eval", "predictions")
def bbox_of_three_numbers(tmp, kit):
    return predictions_case(tmp, kit, [(205, [5, 5, 10], 0.5, 7)], "bbox")


@case("eval", "predictions")
def bbox_of_strings(tmp, kit):
    return predictions_case(tmp, kit, [(205, ["5", "5", "x", "10"], 0.5, 7)], "bbox")


@case("eval", "predictions")
def entry_without_score(tmp, kit):
    return predictions_case(
        tmp, kit, [{"image_id": 101, "bbox": [1, 1, 5, 5], "category_id": 7}], "score"
    )


@case("eval", "predictions")
def predictions_not_json(tmp, kit):
    path = tmp / "results.json"
    path.write_text("[{'image_id': 1,")
    return Expect(
        eval_args(tmp, kit.coco, "--predictions", path),
        2,
        line=(str(path), "JSON"),
        absent=(tmp / "out",),
    )


@case("eval", "predictions")
def predictions_an_object(tmp, kit):
    path = tmp / "results.json"
    path.write_text('{"image_id": 101}')
    return Expect(
        eval_args(tmp, kit.coco, "--predictions", path),
        2,
        line=(str(path), "expected a list"),
        absent=(tmp / "out",),
    )


@case("eval", "empty")
def predictions_empty_file(tmp, kit):
    path = tmp / "results.json"
    path.write_text("")
    return Expect(
        eval_args(tmp, kit.coco, "--predictions", path),
        2,
        line=(str(path),),
        absent=(tmp / "out",),
    )


@case("eval", "predictions")
def predictions_binary(tmp, kit):
    path = tmp / "results.json"
    path.write_bytes(b"\xff\xfe\x00garbage" * 50)
    return Expect(
        eval_args(tmp, kit.coco, "--predictions", path),
        2,
        line=(str(path),),
        absent=(tmp / "out",),
    )


@case("eval", "predictions")
def yolo_txt_predictions_with_bad_lines(tmp, kit):
    folder = tmp / "preds"
    folder.mkdir()
    lines = {
        "scene0": "1 0.375 0.375 0.15625 0.1875 0.9\nnot a line\n",
        "scene1": "1 0.125 0.625 0.15625 0.1875 0.9\n1 0.5 0.5 nan 0.1 0.5\n",
        "scene2": "1 0.875 0.125 0.15625 0.1875 0.9\n7 0.5 0.5 0.1 0.1 0.5\n",
    }
    for stem, text in lines.items():
        (folder / f"{stem}.txt").write_text(text)

    def check(out: str) -> None:
        assert metric(tmp) == 1.0, out
        _assert_in("3 problems", out)

    return Expect(
        eval_args(tmp, kit.coco, "--predictions", folder),
        0,
        line=(str(folder / "scene0.txt"),),
        check=check,
    )


@case("eval", "truncated")
def truncated_image_leaves_the_evaluation_whole(tmp, kit):
    """One of three images cut short: skipped with its ground truth; the other two score 1."""
    data = copy(kit.coco.parent, tmp / "coco")
    bad = truncate(data / "scene1.png")

    def check(out: str) -> None:
        assert metric(tmp) == 1.0, out
        _assert_in("2 images, 1 skipped", out)
        assert json.loads((tmp / "out" / "metrics.json").read_text())["skipped_images"] == 1

    return Expect(
        eval_args(tmp, data / "labels.json", "--model", kit.model),
        0,
        line=(str(bad), "not a readable image"),
        check=check,
    )


@case("eval", "bomb")
def bomb_in_the_dataset(tmp, kit):
    data = copy(kit.coco.parent, tmp / "coco")
    png_bomb(data / "scene2.png")

    def check(out: str) -> None:
        assert metric(tmp) == 1.0, out

    return Expect(
        eval_args(tmp, data / "labels.json", "--model", kit.model),
        0,
        line=(str(data / "scene2.png"), "over the cap"),
        check=check,
    )


@case("eval", "missing")
def image_of_the_dataset_missing(tmp, kit):
    data = copy(kit.coco.parent, tmp / "coco")
    (data / "scene0.png").unlink()

    def check(out: str) -> None:
        assert metric(tmp) == 1.0, out

    return Expect(
        eval_args(tmp, data / "labels.json", "--model", kit.model),
        0,
        line=(str(data / "labels.json"), "scene0.png"),
        check=check,
    )


@case("eval", "missing")
def dataset_missing(tmp, kit):
    return Expect(
        eval_args(tmp, tmp / "nodata", "--model", kit.model),
        2,
        line=(str(tmp / "nodata"), "no such"),
        absent=(tmp / "out",),
    )


@case("eval", "missing")
def predictions_missing(tmp, kit):
    return Expect(
        eval_args(tmp, kit.coco, "--predictions", tmp / "none.json"),
        2,
        line=("none.json",),
        absent=(tmp / "out",),
    )


@case("eval", "empty")
def dataset_empty_folder(tmp, kit):
    (tmp / "data").mkdir()
    return Expect(
        eval_args(tmp, tmp / "data", "--model", kit.model),
        2,
        line=(str(tmp / "data"), "empty"),
        absent=(tmp / "out",),
    )


@case("eval", "wrong type")
def dataset_an_image(tmp, kit):
    image = copy(kit.image, tmp / "good.png")
    return Expect(
        eval_args(tmp, image, "--model", kit.model),
        2,
        line=(str(image), "unknown dataset format"),
        absent=(tmp / "out",),
    )


@case("eval", "malformed labels")
def duplicate_image_ids_in_ground_truth(tmp, kit):
    """Two files under one id: neither gets the other's boxes; named, and the rest scored."""
    data = copy(kit.coco.parent, tmp / "coco")
    raw = json.loads((data / "labels.json").read_text())
    raw["images"][1]["id"] = raw["images"][0]["id"]
    (data / "labels.json").write_text(json.dumps(raw))

    def check(out: str) -> None:
        assert metric(tmp) == 1.0, out
        _assert_in("1 images", out)

    return Expect(
        eval_args(tmp, data / "labels.json", "--model", kit.model),
        0,
        line=(str(data / "labels.json"), "image id 101 is shared"),
        check=check,
    )


@case("eval", "malformed labels")
def voc_ground_truth_with_an_infinite_width(tmp, kit):
    """<width>inf</width> in a VOC annotation: one problem line, the image's own size used,
    the evaluation runs."""
    root = voc_dataset(
        tmp / "voc",
        {
            "a": voc_xml("a.jpg", [("car", (5, 5, 30, 30))], size=("inf", 48)),
            "b": voc_xml("b.jpg", [("car", (5, 5, 30, 30))]),
        },
    )
    return Expect(
        eval_args(tmp, root, "--model", kit.model, "--split", "all"),
        0,
        line=(str(root / "Annotations" / "a.xml"), "size 'inf'"),
        exists=(tmp / "out" / "metrics.json",),
    )


EVAL_BAD_OPTIONS = [
    ("--iou", "nan"),
    ("--iou", "1.5"),
    ("--conf", "nan"),
    ("--conf", "-1"),
    ("--nms-iou", "nan"),
    ("--max-det", "0"),
    ("--batch", "0"),
    ("--split", "training"),
    ("--class-map", "car"),
    ("--device", "gpu:x"),
]


def _eval_base(tmp, kit):
    return eval_args(tmp, kit.coco, "--model", kit.model)


for _option, _value in EVAL_BAD_OPTIONS:
    add("eval", "bad option", f"{_option[2:]}_{_value}", _bad_option(_eval_base, _option, _value))


@case("eval", "bad option")
def predictions_with_augment(tmp, kit):
    path = tmp / "results.json"
    path.write_text("[]")
    return Expect(
        eval_args(tmp, kit.coco, "--predictions", path, "--augment"),
        2,
        line=("--augment", "--predictions"),
        absent=(tmp / "out",),
    )


@case("eval", "bad option")
def model_of_other_classes(tmp, kit):
    from rendered import save_hand_model

    model = save_hand_model(tmp / "other.keras", ["giraffe", "zebra"], 1)
    return Expect(
        eval_args(tmp, kit.coco, "--model", model),
        2,
        line=(str(model), "giraffe"),
        absent=(tmp / "out",),
    )


# --- data check and the dataset readers --------------------------------------------------------


def check_case(root: Path, file: Path, says: str, status: int = 0) -> Expect:
    """``data check root``: one problem line naming ``file``."""
    return Expect(["data", "check", root], status, line=(str(file), says))


def voc_case(tmp: Path, xml: str, says: str, status: int = 0, extra: dict | None = None) -> Expect:
    root = voc_dataset(
        tmp / "voc",
        {"bad": xml, "good": voc_xml("good.jpg", [("car", (5, 5, 30, 30))]), **(extra or {})},
    )
    return check_case(root, root / "Annotations" / "bad.xml", says, status)


VOC_LABELS = [
    (
        "width_inf",
        voc_xml("bad.jpg", [("car", (1, 1, 9, 9))], size=("inf", 48)),
        "not two positive whole numbers",
    ),
    (
        "width_nan",
        voc_xml("bad.jpg", [("car", (1, 1, 9, 9))], size=("nan", 48)),
        "not two positive whole numbers",
    ),
    (
        "width_negative",
        voc_xml("bad.jpg", [("car", (1, 1, 9, 9))], size=(-64, 48)),
        "not two positive whole numbers",
    ),
    (
        "width_words",
        voc_xml("bad.jpg", [("car", (1, 1, 9, 9))], size=("wide", 48)),
        "not two positive whole numbers",
    ),
    ("xmin_inf", voc_xml("bad.jpg", [("car", ("inf", 1, 9, 9))]), "is not finite"),
    ("xmin_nan", voc_xml("bad.jpg", [("car", ("nan", 1, 9, 9))]), "is not finite"),
    ("xmin_words", voc_xml("bad.jpg", [("car", ("left", 1, 9, 9))]), "no valid bndbox"),
    ("box_inverted", voc_xml("bad.jpg", [("car", (30, 30, 5, 5))]), "zero or negative"),
    ("box_outside", voc_xml("bad.jpg", [("car", (500, 500, 600, 600))]), "outside"),
    ("box_zero_area", voc_xml("bad.jpg", [("car", (5, 5, 5, 20))]), "zero or negative"),
    ("not_xml", "<annotation><object>", "malformed XML"),
    ("binary", "\x00\x01\x02garbage", "malformed XML"),
    ("empty_xml", "", "malformed XML"),
    (
        "no_bndbox",
        "<annotation><filename>bad.jpg</filename><object><name>car</name></object></annotation>",
        "no valid bndbox",
    ),
    (
        "no_name",
        "<annotation><filename>bad.jpg</filename><object><bndbox><xmin>1</xmin><ymin>1</ymin>"
        "<xmax>5</xmax><ymax>5</ymax></bndbox></object></annotation>",
        "has no name",
    ),
    (
        "billion_laughs",
        '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
        + "".join(
            f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">'
            for i in range(1, 10)
        )
        + "]><annotation><filename>bad.jpg</filename><object><name>&lol9;</name><bndbox>"
        "<xmin>1</xmin><ymin>1</ymin><xmax>5</xmax><ymax>5</ymax></bndbox></object></annotation>",
        "amplification",
    ),
]

for _name, _xml, _says in VOC_LABELS:
    add(
        "data check",
        "malformed labels",
        f"voc_{_name}",
        lambda tmp, kit, xml=_xml, says=_says: voc_case(tmp, xml, says),
    )


@case("data check", "missing")
def voc_image_missing(tmp, kit):
    root = voc_dataset(
        tmp / "voc",
        {
            "bad": voc_xml("bad.jpg", [("car", (1, 1, 9, 9))]),
            "good": voc_xml("good.jpg", [("car", (5, 5, 30, 30))]),
        },
    )
    (root / "JPEGImages" / "bad.jpg").unlink()
    return check_case(root, root / "Annotations" / "bad.xml", "no image bad")


@case("data check", "truncated")
def voc_image_truncated(tmp, kit):
    root = voc_dataset(
        tmp / "voc",
        {
            "bad": voc_xml("bad.jpg", [("car", (1, 1, 9, 9))]),
            "good": voc_xml("good.jpg", [("car", (5, 5, 30, 30))]),
        },
    )
    bad = truncate(root / "JPEGImages" / "bad.jpg")
    return check_case(root, bad, "not a readable image")


def yolo_case(tmp: Path, text: str, says: str, names: list[str] = NAMES) -> Expect:
    root = yolo_dataset(tmp / "yolo", {"bad": text, "good": GOOD_LABEL}, names)
    return check_case(root, root / "labels" / "bad.txt", says)


YOLO_LABELS = [
    ("four_fields", "1 0.5 0.5 0.2\n", "expected 'class cx cy w h"),
    ("words", "car 0.5 0.5 0.2 0.2\n", "expected 'class cx cy w h"),
    ("class_out_of_range", "9 0.5 0.5 0.2 0.2\n", "class id 9 is not in the class list"),
    ("class_negative", "-1 0.5 0.5 0.2 0.2\n", "expected 'class cx cy w h"),
    ("class_fraction", "1.5 0.5 0.5 0.2 0.2\n", "expected 'class cx cy w h"),
    ("coordinate_nan", "1 nan 0.5 0.2 0.2\n", "non-finite"),
    ("coordinate_inf", "1 0.5 inf 0.2 0.2\n", "non-finite"),
    ("size_zero", "1 0.5 0.5 0 0.2\n", "zero or negative"),
    ("size_negative", "1 0.5 0.5 -0.2 0.2\n", "zero or negative"),
    ("outside_the_image", "1 3.0 3.0 0.2 0.2\n", "lies outside"),
    ("binary", "\x00\xff\xfe\x01garbage\n", "expected 'class cx cy w h"),
    (
        "one_bad_line_among_good",
        "1 0.5 0.5 0.2 0.2\n1 0.5 oops 0.2 0.2\n",
        "line 2: expected 'class cx cy w h",
    ),
]

for _name, _text, _says in YOLO_LABELS:
    add(
        "data check",
        "malformed labels",
        f"yolo_{_name}",
        lambda tmp, kit, text=_text, says=_says: yolo_case(tmp, text, says),
    )


@case("data check", "malformed labels")
def yolo_label_without_image(tmp, kit):
    root = yolo_dataset(tmp / "yolo", {"good": GOOD_LABEL})
    orphan = root / "labels" / "orphan.txt"
    orphan.write_text(GOOD_LABEL)
    return check_case(root, orphan, "orphan")


@case("data check", "malformed labels")
def yolo_data_yaml_malformed(tmp, kit):
    root = yolo_dataset(tmp / "yolo", {"good": GOOD_LABEL})
    (root / "classes.txt").unlink()
    (root / "data.yaml").write_text("names: [car, {bad\n")
    return Expect(["data", "check", root], 2, line=(str(root / "data.yaml"),))


@case("data check", "malformed labels")
def yolo_data_yaml_names_wrong_type(tmp, kit):
    root = yolo_dataset(tmp / "yolo", {"good": GOOD_LABEL})
    (root / "classes.txt").unlink()
    (root / "data.yaml").write_text("names: 3\n")
    return Expect(["data", "check", root], 2, line=(str(root / "data.yaml"), "names"))


@case("data check", "malformed labels")
def yolo_data_yaml_a_list(tmp, kit):
    root = yolo_dataset(tmp / "yolo", {"good": GOOD_LABEL})
    (root / "classes.txt").unlink()
    (root / "data.yaml").write_text("- 1\n- 2\n")
    return Expect(["data", "check", root], 2, line=(str(root / "data.yaml"),))


def coco_case(tmp: Path, images, annotations, says: str, status: int = 0, **top) -> Expect:
    path = coco_dataset(tmp / "coco", images, annotations, **top)
    return Expect(["data", "check", path], status, line=(str(path), says))


GOOD_IMAGES = [coco_image(5), coco_image(6)]

COCO_LABELS = [
    (
        "duplicate_image_ids",
        [coco_image(5, "a.jpg"), coco_image(5, "b.jpg"), coco_image(6)],
        [coco_box(5, [1, 1, 9, 9]), coco_box(6, [2, 2, 9, 9], k=2)],
        "image id 5 is shared",
    ),
    (
        "bbox_negative_width",
        GOOD_IMAGES,
        [coco_box(5, [10, 10, -5, 9]), coco_box(6, [2, 2, 9, 9], k=2)],
        "im5.jpg: box [10, 10, 5, 19] (car) has zero or negative width",
    ),
    (
        "bbox_strings",
        GOOD_IMAGES,
        [coco_box(5, ["1", "1", "9", "x"]), coco_box(6, [2, 2, 9, 9], k=2)],
        "bbox",
    ),
    ("bbox_missing", GOOD_IMAGES, [{"id": 1, "image_id": 5, "category_id": 7}], "bbox"),
    ("bbox_nan", GOOD_IMAGES, [coco_box(5, [math.nan, 1, 9, 9])], "im5.jpg: box [nan"),
    ("bbox_three_numbers", GOOD_IMAGES, [coco_box(5, [1, 1, 9])], "bbox"),
    ("unknown_category", GOOD_IMAGES, [coco_box(5, [1, 1, 9, 9], cat=42)], "42"),
    ("unknown_image_id", GOOD_IMAGES, [coco_box(77, [1, 1, 9, 9])], "unknown image_id 77"),
    ("image_id_a_list", GOOD_IMAGES, [coco_box([5], [1, 1, 9, 9])], "unknown image_id [5]"),
    (
        "image_without_file_name",
        [{"id": 5, "width": 64, "height": 48}, coco_image(6)],
        [coco_box(6, [1, 1, 9, 9])],
        "file_name",
    ),
    (
        "image_file_name_a_number",
        [coco_image(5, 17), coco_image(6)],
        [coco_box(6, [1, 1, 9, 9])],
        "file_name",
    ),
    (
        "image_width_inf",
        [coco_image(5, width=math.inf), coco_image(6)],
        [coco_box(5, [1, 1, 9, 9])],
        "width inf",
    ),
    (
        "annotation_a_string",
        GOOD_IMAGES,
        ["not an annotation", coco_box(6, [1, 1, 9, 9])],
        "'not an annotation' is not an object",
    ),
]

for _name, _images, _annotations, _says in COCO_LABELS:
    add(
        "data check",
        "malformed labels",
        f"coco_{_name}",
        lambda tmp, kit, i=_images, a=_annotations, s=_says: coco_case(tmp, i, a, s),
    )


@case("data check", "malformed labels")
def coco_categories_wrong_type(tmp, kit):
    return coco_case(
        tmp, GOOD_IMAGES, [coco_box(5, [1, 1, 9, 9])], "categories 7 is not a list", categories=7
    )


@case("data check", "malformed labels")
def coco_images_not_a_list(tmp, kit):
    path = coco_dataset(tmp / "coco", [], [])
    raw = json.loads(path.read_text())
    raw["images"] = {"5": "a.jpg"}
    path.write_text(json.dumps(raw))
    return Expect(["data", "check", path], 2, line=(str(path), "images"))


@case("data check", "corrupt")
def coco_not_json(tmp, kit):
    path = tmp / "coco" / "labels.json"
    path.parent.mkdir()
    path.write_text('{"images": [')
    return Expect(["data", "check", path], 2, line=(str(path),))


@case("data check", "corrupt")
def coco_json_a_list(tmp, kit):
    path = tmp / "coco" / "labels.json"
    path.parent.mkdir()
    path.write_text("[1, 2, 3]")
    return Expect(["data", "check", path], 2, line=(str(path),))


@case("data check", "empty")
def coco_json_empty(tmp, kit):
    path = tmp / "coco" / "labels.json"
    path.parent.mkdir()
    path.write_text("")
    return Expect(["data", "check", path], 2, line=(str(path),))


@case("data check", "missing")
def dataset_path_missing(tmp, kit):
    return Expect(["data", "check", tmp / "nodata"], 2, line=(str(tmp / "nodata"), "no such"))


@case("data check", "empty")
def dataset_folder_empty(tmp, kit):
    (tmp / "data").mkdir()
    return Expect(["data", "check", tmp / "data"], 2, line=(str(tmp / "data"), "empty"))


@case("data check", "wrong type")
def dataset_an_image_file(tmp, kit):
    image = copy(kit.image, tmp / "good.png")
    return Expect(["data", "check", image], 2, line=(str(image), "unknown dataset format"))


@case("data check", "wrong type")
def dataset_folder_of_text(tmp, kit):
    (tmp / "data").mkdir()
    (tmp / "data" / "notes.md").write_text("# notes\n")
    return Expect(["data", "check", tmp / "data"], 2, line=(str(tmp / "data"), "unknown"))


@case("data check", "bomb")
def bomb_in_a_yolo_dataset(tmp, kit):
    root = yolo_dataset(tmp / "yolo", {"good": GOOD_LABEL})
    bomb = png_bomb(root / "images" / "bomb.png")
    (root / "labels" / "bomb.txt").write_text(GOOD_LABEL)
    return check_case(root, bomb, "over the cap")


@case("data check", "corrupt")
def only_unreadable_images(tmp, kit):
    root = yolo_dataset(tmp / "yolo", {"a": GOOD_LABEL, "b": GOOD_LABEL})
    for name in ("a", "b"):
        (root / "images" / f"{name}.jpg").write_bytes(b"not a jpeg")
    return Expect(["data", "check", root], 2, line=(str(root), "no usable images"))


@case("data check", "empty")
def empty_image_in_a_dataset(tmp, kit):
    root = yolo_dataset(tmp / "yolo", {"bad": GOOD_LABEL, "good": GOOD_LABEL})
    bad = root / "images" / "bad.jpg"
    bad.write_bytes(b"")
    return check_case(root, bad, "empty")


@case("data check", "bad option")
def unknown_split(tmp, kit):
    root = yolo_dataset(tmp / "yolo", {"good": GOOD_LABEL})
    return Expect(["data", "check", root, "--split", "training"], 2, line=("training",))


# --- data convert ------------------------------------------------------------------------------


@case("data convert", "missing")
def convert_source_missing(tmp, kit):
    return Expect(
        ["data", "convert", tmp / "none", tmp / "dst", "--format", "coco"],
        2,
        line=(str(tmp / "none"), "no such"),
        absent=(tmp / "dst",),
    )


@case("data convert", "bad output")
def convert_into_a_file(tmp, kit):
    target = _file(tmp)
    return Expect(
        ["data", "convert", kit.coco, target, "--format", "yolo"],
        2,
        line=(str(target),),
        intact=(target,),
    )


@case("data convert", "bad output")
def convert_under_a_file(tmp, kit):
    target = _file(tmp) / "dst"
    return Expect(["data", "convert", kit.coco, target, "--format", "yolo"], 2, line=(str(target),))


@case("data convert", "bad output")
def convert_into_a_folder_in_use(tmp, kit):
    (tmp / "dst").mkdir()
    kept = tmp / "dst" / "mine.txt"
    kept.write_text("mine\n")
    return Expect(
        ["data", "convert", kit.coco, tmp / "dst", "--format", "yolo"],
        2,
        line=(str(tmp / "dst"),),
        intact=(kept,),
    )


@case("data convert", "bad output")
def convert_into_proc(tmp, kit):
    return Expect(
        ["data", "convert", kit.coco, "/proc/yolo-data", "--format", "voc"],
        2,
        line=("/proc/yolo-data",),
    )


@case("data convert", "bad option")
def convert_to_unknown_format(tmp, kit):
    return Expect(
        ["data", "convert", kit.coco, tmp / "dst", "--format", "csv"],
        2,
        line=("--format", "csv"),
        absent=(tmp / "dst",),
    )


@case("data convert", "bad option")
def convert_unknown_split(tmp, kit):
    return Expect(
        ["data", "convert", kit.coco, tmp / "dst", "--format", "yolo", "--split", "training"],
        2,
        line=("training",),
        absent=(tmp / "dst",),
    )


@case("data convert", "malformed labels")
def convert_skips_bad_labels_and_writes_the_rest(tmp, kit):
    root = yolo_dataset(tmp / "yolo", {"bad": "1 nan 0.5 0.2 0.2\n", "good": GOOD_LABEL})

    def check(out: str) -> None:
        written = json.loads(next((tmp / "dst").rglob("*.json")).read_text())
        assert len(written["images"]) == 2 and len(written["annotations"]) == 1, written

    return Expect(
        ["data", "convert", root, tmp / "dst", "--format", "coco"],
        0,
        check=check,
        line=("1 problems",),
    )


@case("data convert", "bomb")
def convert_skips_a_bomb(tmp, kit):
    root = yolo_dataset(tmp / "yolo", {"good": GOOD_LABEL})
    png_bomb(root / "images" / "bomb.png")
    (root / "labels" / "bomb.txt").write_text(GOOD_LABEL)

    def check(out: str) -> None:
        assert not list((tmp / "dst").rglob("bomb.png"))

    return Expect(
        ["data", "convert", root, tmp / "dst", "--format", "voc"],
        0,
        check=check,
        line=("oversized-image",),
    )


# --- data synth --------------------------------------------------------------------------------

SYNTH_BAD_OPTIONS = [
    ("--n-images", "0"),
    ("--n-images", "-5"),
    ("--img-size", "0"),
    ("--img-size", "100"),
    ("--img-size", "65536"),
    ("--seed", "-1"),
    ("--fractions", "a,b,c"),
    ("--fractions", "0.5,0.5,0.5"),
    ("--fractions", "-0.2,0.6,0.6"),
    ("--fractions", "nan,0.5,0.5"),
    ("--fractions", "1"),
]
FRACTIONS_SAY = ("split fractions must be three non-negative numbers",)


def _synth_base(tmp, kit):
    return ["data", "synth", tmp / "out", "--n-images", "4"]


for _option, _value in SYNTH_BAD_OPTIONS:
    add(
        "data synth",
        "bad option",
        f"{_option[2:]}_{_value}",
        _bad_option(
            _synth_base,
            _option,
            _value,
            FRACTIONS_SAY if _option == "--fractions" and _value != "a,b,c" else (),
        ),
    )


@case("data synth", "bad output")
def synth_into_a_file(tmp, kit):
    target = _file(tmp)
    return Expect(
        ["data", "synth", target, "--n-images", "4"],
        2,
        line=(str(target), "not an empty folder"),
        intact=(target,),
    )


@case("data synth", "bad output")
def synth_under_a_file(tmp, kit):
    target = _file(tmp) / "scenes"
    return Expect(["data", "synth", target, "--n-images", "4"], 2, line=(str(target), "is a file"))


@case("data synth", "bad output")
def synth_into_proc(tmp, kit):
    return Expect(
        ["data", "synth", "/proc/scenes", "--n-images", "4"],
        2,
        line=("/proc/scenes", "cannot write"),
    )


@case("data synth", "bad output")
def synth_into_a_dataset_in_use(tmp, kit):
    data = copy(kit.scenes, tmp / "scenes")
    kept = sorted((data / "labels" / "train").iterdir())[0]
    return Expect(
        ["data", "synth", data, "--n-images", "4"],
        2,
        line=(str(data), "not an empty folder"),
        intact=(kept,),
    )


# --- train -------------------------------------------------------------------------------------

TRAIN_BAD_OPTIONS = [
    ("--lr", "nan"),
    ("--lr", "-1"),
    ("--lr", "0"),
    ("--lr", "inf"),
    ("--img-size", "0"),
    ("--img-size", "-32"),
    ("--img-size", "65536"),
    ("--img-size", "100"),
    ("--epochs", "0"),
    ("--epochs", "1.5"),
    ("--batch", "0"),
    ("--width", "nan"),
    ("--width", "0"),
    ("--lambda-obj", "0"),
    ("--lambda-obj", "nan"),
    ("--seed", "-1"),
    ("--num-anchors", "0"),
    ("--num-anchors", "10"),
    ("--freeze", "-1"),
    ("--freeze", "1001"),
    ("--max-steps", "0"),
    ("--minutes", "nan"),
    ("--minutes", "0"),
    ("--patience", "-1"),
    ("--device", "tpu"),
    ("--strategy", "horovod"),
    ("--heads", "0"),
    ("--heads", "4"),
    ("--mosaic", "nan"),
    ("--mosaic", "1.5"),
    ("--close-mosaic", "-1"),
    ("--val-share", "0"),
    ("--val-share", "nan"),
    ("--loss", "magic"),
    ("--assign", "magic"),
]


def _train_base(tmp, kit):
    return ["train", "--data", tmp / "no-dataset", "--out", tmp / "out"]


for _option, _value in TRAIN_BAD_OPTIONS:
    add("train", "bad option", f"{_option[2:]}_{_value}", _bad_option(_train_base, _option, _value))


def tiny_train(
    tmp: Path, data: Path, *extra, epochs: int = 1, steps: int = 1, img_size: int = 64
) -> list:
    """``yolo train`` of tiny epochs of ``steps`` steps of 4 images on ``data`` into
    ``tmp/out``."""
    return [
        "train",
        "--data",
        data,
        "--out",
        tmp / "out",
        "--epochs",
        epochs,
        "--img-size",
        img_size,
        "--batch",
        4,
        "--width",
        0.25,
        "--num-anchors",
        3,
        "--max-steps",
        steps,
        "--device",
        "cpu",
        "--strategy",
        "none",
        *extra,
    ]


@case("train", "missing")
def train_data_missing(tmp, kit):
    return Expect(
        tiny_train(tmp, tmp / "nodata"),
        2,
        line=(str(tmp / "nodata"), "no such"),
        absent=(tmp / "out",),
    )


@case("train", "empty")
def train_data_empty(tmp, kit):
    (tmp / "data").mkdir()
    return Expect(
        tiny_train(tmp, tmp / "data"), 2, line=(str(tmp / "data"), "empty"), absent=(tmp / "out",)
    )


@case("train", "corrupt")
def train_data_all_unreadable(tmp, kit):
    data = copy(kit.scenes, tmp / "scenes")
    for image in (data / "images").rglob("*.jpg"):
        image.write_bytes(b"no pixels here")
    return Expect(tiny_train(tmp, data), 2, line=(str(data),), absent=(tmp / "out",))


@case("train", "truncated")
def truncated_validation_image(tmp, kit):
    """One val image cut short: skipped and counted; the run finishes and saves."""
    data = copy(kit.scenes, tmp / "scenes")
    bad = truncate(sorted((data / "images" / "val").iterdir())[0])
    out = tmp / "out"
    return Expect(
        tiny_train(tmp, data),
        0,
        line=(str(bad), "not a readable image"),
        exists=(out / "best.keras", out / "last.keras"),
        check=lambda text: _assert_in("finished: 1/1 epochs", text),
    )


@case("train", "truncated")
def truncated_training_image(tmp, kit):
    data = copy(kit.scenes, tmp / "scenes")
    bad = truncate(sorted((data / "images" / "train").iterdir())[0])
    return Expect(
        tiny_train(tmp, data, steps=4),
        0,
        line=(str(bad), "not a readable image"),
        exists=(tmp / "out" / "last.keras",),
        check=lambda text: _assert_in("finished: 1/1 epochs", text),
    )


@case("train", "bomb")
def bomb_among_the_training_images(tmp, kit):
    data = copy(kit.scenes, tmp / "scenes")
    bomb = png_bomb(data / "images" / "train" / "bomb.png")
    (data / "labels" / "train" / "bomb.txt").write_text("1 0.5 0.5 0.2 0.2\n")
    return Expect(
        tiny_train(tmp, data, steps=4),
        0,
        line=(str(bomb), "over the cap"),
        exists=(tmp / "out" / "last.keras",),
    )


@case("train", "malformed labels")
def malformed_training_labels(tmp, kit):
    data = copy(kit.scenes, tmp / "scenes")
    label = sorted((data / "labels" / "train").iterdir())[0]
    label.write_text("1 nan 0.5 0.2 0.2\n9 0.5 0.5 0.1 0.1\n")
    return Expect(
        tiny_train(tmp, data),
        0,
        line=(str(label),),
        exists=(tmp / "out" / "last.keras",),
    )


def _weights_case(make, says: str, kind: str):
    def build(tmp, kit):
        weights = make(tmp, kit)
        cost = HOSTILE_COST if kind == "hostile model" else {}
        return Expect(
            tiny_train(tmp, kit.scenes, "--weights", weights, img_size=SIZE),
            2,
            line=(str(weights), says),
            absent=(tmp / "out",),
            **cost,
        )

    return build


for _name, _kind, _make, _says in MODEL_FILES:
    if _name in {"missing", "garbage", "lambda", "entry_declares_3gb", "foreign_network", "image"}:
        add("train", _kind, f"weights_{_name}", _weights_case(_make, _says, _kind))


@case("train", "corrupt")
def weights_file_holding_nan(tmp, kit):
    """A --weights file with a NaN weight: refused before training (a NaN never trains)."""
    weights = nan_weights(kit, tmp / "nan.keras")
    data = copy(kit.scenes, tmp / "scenes")
    return Expect(
        tiny_train(tmp, data, "--weights", weights),
        2,
        line=(str(weights), "NaN"),
        absent=(tmp / "out",),
    )


def _resume_copy(tmp: Path, kit: Kit) -> Path:
    return copy(kit.run, tmp / "run")


def _state(run: Path) -> dict:
    from yolo_cli.train.checkpoint import STATE_NAME

    with zipfile.ZipFile(run / "last.keras") as archive:
        return json.loads(archive.read(STATE_NAME))


def _replace_state(run: Path, state) -> Path:
    from yolo_cli.train.checkpoint import STATE_NAME

    path = run / "last.keras"
    data = None if state is None else (state if isinstance(state, bytes) else json.dumps(state))
    tmp = path.with_name("edited.keras")
    rewrite_archive(path, tmp, lambda n, d: data if n == STATE_NAME else d)
    if data is not None:
        with zipfile.ZipFile(tmp) as z:
            present = STATE_NAME in z.namelist()
        if not present:
            with zipfile.ZipFile(tmp, "a") as z:
                z.writestr(STATE_NAME, data)
    tmp.replace(path)
    return path


def _resume_refused(tmp: Path, run: Path, says: str, *extra) -> Expect:
    last = run / "last.keras"
    return Expect(
        ["train", "--resume", run, *extra],
        2,
        line=(str(last) if "--" not in says else "--resume", says),
        intact=(last, run / "best.keras"),
    )


@case("train", "resume")
def resume_missing_folder(tmp, kit):
    return Expect(["train", "--resume", tmp / "norun"], 2, line=(str(tmp / "norun"),))


@case("train", "resume")
def resume_folder_without_checkpoint(tmp, kit):
    (tmp / "run").mkdir()
    return Expect(["train", "--resume", tmp / "run"], 2, line=(str(tmp / "run"),))


@case("train", "resume")
def resume_truncated_checkpoint(tmp, kit):
    run = _resume_copy(tmp, kit)
    truncate(run / "last.keras")
    return _resume_refused(tmp, run, "not a Keras model archive")


@case("train", "resume")
def resume_empty_checkpoint(tmp, kit):
    run = _resume_copy(tmp, kit)
    (run / "last.keras").write_bytes(b"")
    return _resume_refused(tmp, run, "not a Keras model archive")


RUN_STATES = [
    ("state_not_json", b"{not json", "corrupt run state"),
    ("state_a_list", b"[1, 2]", "not a JSON object"),
    ("state_missing_fields", b'{"version": 1, "epochs": 1}', "corrupt run state"),
    ("state_absent", None, "holds no run state"),
]
for _name, _state_bytes, _says in RUN_STATES:

    def _build(tmp, kit, state=_state_bytes, says=_says):
        run = _resume_copy(tmp, kit)
        _replace_state(run, state)
        return _resume_refused(tmp, run, says)

    add("train", "resume", f"resume_{_name}", _build)


STATE_CHANGES = [
    ("epochs_done_beyond_epochs", {"epochs_done": 5}),
    ("step_negative", {"step": -1}),
    ("lr_infinite", {"config": "lr=inf"}),
    ("epochs_a_string", {"epochs": "1"}),
    ("best_map_nan", {"best_map50": "NaN"}),
]
for _name, _change in STATE_CHANGES:

    def _build(tmp, kit, change=_change):
        run = _resume_copy(tmp, kit)
        state = _state(run)
        for key, value in change.items():
            if key == "config":
                field_, number = value.split("=")
                state["config"] = {**state["config"], field_: float(number)}
            elif value == "NaN":
                state[key] = math.nan
            else:
                state[key] = value
        _replace_state(run, json.dumps(state).encode())
        return _resume_refused(tmp, run, "corrupt run state")

    add("train", "resume", f"resume_{_name}", _build)


@case("train", "resume")
def resume_with_another_learning_rate(tmp, kit):
    run = _resume_copy(tmp, kit)
    return _resume_refused(tmp, run, "--lr", "--lr", "0.1")


@case("train", "interrupt")
def resume_after_a_write_was_cut_short(tmp, kit):
    """A killed process's temporary checkpoint (its pid gone) is removed by the resume, which
    trains on from last.keras."""
    run = _resume_copy(tmp, kit)
    stale = run / ".last.keras.999999999.tmp.keras"
    stale.write_bytes((run / "last.keras").read_bytes()[:1000])
    return Expect(
        ["train", "--resume", run, "--epochs", "2"],
        0,
        absent=(stale,),
        check=lambda text: _assert_in("finished: 2/2 epochs", text),
    )


@case("train", "resume")
def resume_best_model_corrupt(tmp, kit):
    """best.keras damaged but last.keras whole: the run resumes from last.keras (it holds
    everything a resume needs) and finishes its extra epoch."""
    run = _resume_copy(tmp, kit)
    (run / "best.keras").write_bytes(b"junk")
    return Expect(
        ["train", "--resume", run, "--epochs", "2"],
        0,
        check=lambda text: _assert_in("finished: 2/2 epochs", text),
    )


def _fsize_case(tmp: Path, args: list, limit: int, target: Path, exists=(), absent=()) -> Expect:
    return Expect(
        args,
        2,
        line=(str(target), "cannot write"),
        exists=tuple(exists),
        absent=(target, *absent),
        process=Process(fsize=limit),
    )


@case("detect", "disk full", slow=True)
def disk_full_while_writing_an_annotated_image(tmp, kit):
    """Files may grow to 2 MB: the model (unpacked by Keras), the labels and the small
    image's copy fit, the 5.7 MB annotated copy of the large one does not."""
    good = copy(kit.image, tmp / "a.png")
    big = write_noise(tmp / "b.png", (1600, 1200), seed=7)
    out = tmp / "out"
    return _fsize_case(
        tmp,
        detect_args(tmp, kit, good, big, extra=["--save-txt", "--batch", "1"]),
        2_000_000,
        out / "b.png",
        exists=(out / "a.png", out / "labels" / "a.txt"),
    )


@case("train", "disk full", slow=True)
def disk_full_while_saving_a_checkpoint(tmp, kit):
    """Files may grow to 40 kB: the history fits, best.keras (written first) does not; the
    run stops with one line and leaves no checkpoint that a resume could misread."""
    out = tmp / "out"
    return _fsize_case(
        tmp, tiny_train(tmp, kit.scenes), 40_000, out / "best.keras", absent=(out / "last.keras",)
    )


@case("data convert", "disk full", slow=True)
def disk_full_while_converting(tmp, kit):
    data = copy(kit.scenes, tmp / "scenes")
    return Expect(
        ["data", "convert", data, tmp / "dst", "--format", "coco"],
        2,
        line=(str(tmp / "dst"), "cannot write"),
        absent=(tmp / "dst",),
        process=Process(fsize=3000),
    )


@case("detect", "interrupt", slow=True)
def sigint_during_a_long_video(tmp, kit):
    """Ctrl-C mid-video: exit 130, the annotated video so far finished and readable, labels
    kept."""
    import cv2
    from rendered import patch_scene

    image, _ = patch_scene([(1, 1)])
    video = tmp / "long.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (SIZE, SIZE))
    for _ in range(3000):
        writer.write(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    writer.release()
    out = tmp / "out"

    def check(text: str) -> None:
        _assert_in("interrupted: ", text)
        capture = cv2.VideoCapture(str(out / "long.mp4"))
        ok, _ = capture.read()
        capture.release()
        assert ok, "the annotated video is not readable"

    return Expect(
        detect_args(tmp, kit, video, extra=["--save-txt", "--batch", "1"]),
        130,
        exists=(out / "long.mp4", out / "labels" / "long_0.txt"),
        check=check,
        process=Process(signal=signal.SIGINT, when=out / "labels" / "long_20.txt"),
    )


# --- import (Darknet) --------------------------------------------------------------------------


def import_case(
    tmp: Path, kit: Kit, cfg: Path | None, weights: Path | None, says: str, bad: Path, *extra
):
    good_cfg, good_weights = kit.darknet
    return Expect(
        ["import", cfg or good_cfg, weights or good_weights, "--out", tmp / "m.keras", *extra],
        2,
        line=(str(bad), says),
        absent=(tmp / "m.keras",),
    )


def _cfg(tmp: Path, text: str) -> Path:
    path = tmp / "bad.cfg"
    path.write_text(text)
    return path


CFG_CHANGES = [
    ("unknown_section", DARKNET_CFG.replace("[maxpool]", "[teleport]"), "teleport"),
    ("filters_words", DARKNET_CFG.replace("filters=8", "filters=eight"), "filters"),
    ("filters_negative", DARKNET_CFG.replace("filters=8", "filters=-8"), "filters"),
    ("filters_huge", DARKNET_CFG.replace("filters=8", "filters=1000000000"), "filters"),
    ("width_zero", DARKNET_CFG.replace("width=64", "width=0"), "width"),
    ("width_huge", DARKNET_CFG.replace("width=64", "width=99999999"), "width"),
    ("size_nan", DARKNET_CFG.replace("size=3", "size=nan"), "size"),
    ("unclosed_header", DARKNET_CFG.replace("[maxpool]", "[maxpool"), "maxpool"),
    ("no_net", DARKNET_CFG.split("\n", 4)[4], "[net]"),
    ("no_head", DARKNET_CFG.split("[yolo]")[0], "no [yolo]"),
    ("mask_out_of_range", DARKNET_CFG.replace("mask=0,1", "mask=0,7"), "mask"),
    ("anchors_odd", DARKNET_CFG.replace("anchors=10,14, 23,27", "anchors=10,14, 23"), "anchors"),
    ("classes_mismatch", DARKNET_CFG.replace("classes=2", "classes=5"), "classes"),
    (
        "route_forward",
        DARKNET_CFG.replace("[maxpool]\nsize=2\nstride=2", "[route]\nlayers=5"),
        "route",
    ),
    ("binary", "\x00\x01[net]\x00\xff", "comes before any [section]"),
]
for _name, _text, _says in CFG_CHANGES:

    def _build(tmp, kit, text=_text, says=_says):
        cfg = _cfg(tmp, text)
        return import_case(tmp, kit, cfg, None, says, cfg)

    add("import", "corrupt" if _name == "binary" else "malformed cfg", f"cfg_{_name}", _build)


@case("import", "missing")
def cfg_missing(tmp, kit):
    return import_case(tmp, kit, tmp / "none.cfg", None, "not found", tmp / "none.cfg")


@case("import", "missing")
def weights_missing(tmp, kit):
    return import_case(tmp, kit, None, tmp / "none.weights", "not found", tmp / "none.weights")


@case("import", "empty")
def cfg_empty(tmp, kit):
    cfg = _cfg(tmp, "")
    return import_case(tmp, kit, cfg, None, "the first section must be [net]", cfg)


@case("import", "empty")
def weights_empty(tmp, kit):
    weights = _bytes(tmp / "w.weights", b"")
    return import_case(tmp, kit, None, weights, "too short", weights)


@case("import", "truncated")
def weights_truncated(tmp, kit):
    weights = truncate(copy(kit.darknet[1], tmp / "w.weights"), 0.9)
    return import_case(tmp, kit, None, weights, "too short", weights)


@case("import", "corrupt")
def weights_too_long(tmp, kit):
    weights = copy(kit.darknet[1], tmp / "w.weights")
    weights.write_bytes(weights.read_bytes() + bytes(40))
    return import_case(tmp, kit, None, weights, "40 bytes left over", weights)


@case("import", "corrupt")
def weights_holding_nan(tmp, kit):
    data = bytearray(kit.darknet[1].read_bytes())
    data[-4:] = np.array([np.nan], "<f4").tobytes()
    weights = _bytes(tmp / "w.weights", bytes(data))
    return import_case(tmp, kit, None, weights, "NaN", weights)


@case("import", "corrupt")
def weights_negative_variance(tmp, kit):
    data = bytearray(kit.darknet[1].read_bytes())
    at = len(DARKNET_HEADER) + 4 * 24  # the first rolling variance
    data[at : at + 4] = np.array([-1.0], "<f4").tobytes()
    weights = _bytes(tmp / "w.weights", bytes(data))
    return import_case(tmp, kit, None, weights, "variance", weights)


@case("import", "wrong type")
def cfg_a_folder(tmp, kit):
    (tmp / "x.cfg").mkdir()
    return import_case(tmp, kit, tmp / "x.cfg", None, "is a directory", tmp / "x.cfg")


@case("import", "hostile model")
def cfg_sparse_2gb(tmp, kit):
    cfg = sparse_giant(tmp / "big.cfg")
    expect = import_case(tmp, kit, cfg, None, "bytes", cfg)
    expect.seconds, expect.memory_mb = HOSTILE_COST["seconds"], HOSTILE_COST["memory_mb"]
    return expect


@case("import", "malformed cfg")
def names_count_mismatch(tmp, kit):
    names = tmp / "x.names"
    names.write_text("a\nb\nc\n")
    return import_case(tmp, kit, None, None, "classes=2", names, "--names", names)


@case("import", "malformed cfg")
def names_repeat(tmp, kit):
    names = tmp / "x.names"
    names.write_text("a\na\n")
    return import_case(tmp, kit, None, None, "repeats", names, "--names", names)


@case("import", "missing")
def names_missing(tmp, kit):
    names = tmp / "x.names"
    return import_case(tmp, kit, None, None, "not found", names, "--names", names)


@case("import", "bad output")
def import_out_not_keras(tmp, kit):
    cfg, weights = kit.darknet
    return Expect(
        ["import", cfg, weights, "--out", tmp / "m.h5"],
        2,
        line=(str(tmp / "m.h5"), ".keras"),
        absent=(tmp / "m.h5",),
    )


@case("import", "bad output")
def import_out_under_a_file(tmp, kit):
    cfg, weights = kit.darknet
    target = _file(tmp) / "m.keras"
    return Expect(["import", cfg, weights, "--out", target], 2, line=(str(target), "is a file"))


@case("import", "bad output")
def import_out_a_folder(tmp, kit):
    cfg, weights = kit.darknet
    (tmp / "m.keras").mkdir()
    return Expect(
        ["import", cfg, weights, "--out", tmp / "m.keras"],
        2,
        line=(str(tmp / "m.keras"), "is a directory"),
    )


# --- export ------------------------------------------------------------------------------------

EXPORT_BAD = [
    ("format_unknown", ["--format", "caffe"], ("--format", "caffe")),
    ("int8_without_data", ["--format", "tflite", "--int8"], ("--int8", "--data")),
    ("data_without_int8", ["--format", "tflite", "--data", "x"], ("--int8", "--data")),
    ("img_size_0", ["--format", "onnx", "--img-size", "0"], ("--img-size", "0")),
    ("img_size_100", ["--format", "onnx", "--img-size", "100"], ("--img-size", "100")),
    ("img_size_65536", ["--format", "onnx", "--img-size", "65536"], ("--img-size", "65536")),
    ("conf_nan", ["--format", "saved_model", "--conf", "nan"], ("--conf", "nan")),
    ("nms_iou_2", ["--format", "saved_model", "--nms-iou", "2"], ("--nms-iou", "2")),
    ("calib_images_0", ["--format", "tflite", "--calib-images", "0"], ("--calib-images", "0")),
    ("half_and_int8", ["--format", "tflite", "--half", "--int8", "--data", "x"], ("--half",)),
]
EXPORT_OUT = {"onnx": "m.onnx", "tflite": "m.tflite", "saved_model": "m_saved_model", "caffe": "m"}
for _name, _extra, _says in EXPORT_BAD:

    def _build(tmp, kit, extra=_extra, says=_says):
        out = tmp / EXPORT_OUT[extra[1]]
        return Expect(["export", kit.model, *extra, "--out", out], 2, line=says, absent=(out,))

    add("export", "bad option", _name, _build)


@case("export", "bad output")
def export_out_wrong_suffix(tmp, kit):
    return Expect(
        ["export", kit.model, "--format", "tflite", "--out", tmp / "m.onnx"],
        2,
        line=(str(tmp / "m.onnx"), ".tflite"),
        absent=(tmp / "m.onnx",),
    )


@case("export", "bad output")
def export_out_under_a_file(tmp, kit):
    target = _file(tmp) / "m.onnx"
    return Expect(
        ["export", kit.model, "--format", "onnx", "--out", target], 2, line=(str(target),)
    )


# --- anchors -----------------------------------------------------------------------------------

ANCHORS_BAD = [
    ("--num-anchors", "0"),
    ("--num-anchors", "10"),
    ("--img-size", "0"),
    ("--img-size", "-32"),
    ("--img-size", "65536"),
    ("--img-size", "100"),
    ("--seed", "-1"),
    ("--split", "training"),
]


def _anchors_base(tmp, kit):
    return ["anchors", kit.scenes]


for _option, _value in ANCHORS_BAD:
    add(
        "anchors",
        "bad option",
        f"{_option[2:]}_{_value}",
        _bad_option(_anchors_base, _option, _value),
    )


@case("anchors", "missing")
def anchors_dataset_missing(tmp, kit):
    return Expect(["anchors", tmp / "nodata"], 2, line=(str(tmp / "nodata"), "no such"))


@case("anchors", "empty")
def anchors_dataset_empty(tmp, kit):
    (tmp / "data").mkdir()
    return Expect(["anchors", tmp / "data"], 2, line=(str(tmp / "data"), "empty"))


@case("anchors", "malformed labels")
def anchors_fewer_boxes_than_anchors(tmp, kit):
    root = yolo_dataset(tmp / "yolo", {"a": GOOD_LABEL, "b": "1 nan 0.5 0.2 0.2\n"})
    return Expect(
        ["anchors", root, "--split", "all", "--num-anchors", "3"],
        2,
        line=(str(root), "1 boxes", "3 anchors"),
    )


@case("anchors", "bomb")
def anchors_skip_a_bomb(tmp, kit):
    data = copy(kit.scenes, tmp / "scenes")
    bomb = png_bomb(data / "images" / "train" / "bomb.png")
    (data / "labels" / "train" / "bomb.txt").write_text("1 0.5 0.5 0.2 0.2\n")
    return Expect(["anchors", data, "--num-anchors", "3"], 0, line=(str(bomb), "over the cap"))


# --- running and checking ----------------------------------------------------------------------


def yolo_command(args: list) -> list[str]:
    return [sys.executable, "-m", "yolo_cli.cli", *map(str, args)]


def child_env(extra: dict) -> dict:
    import os

    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **extra}


def table(cases: list[Case] = CASES) -> str:
    """Cases by kind (rows) × command (columns), Markdown, with totals."""
    counts = Counter((c.kind, c.command) for c in cases)
    commands = [c for c in COMMANDS if any(x.command == c for x in cases)]
    rows = ["| kind | " + " | ".join(commands) + " | all |", "|---" * (len(commands) + 2) + "|"]
    for kind in KINDS:
        cells = [str(counts[kind, c] or "") for c in commands]
        total = sum(counts[kind, c] for c in commands)
        if total:
            rows.append(f"| {kind} | " + " | ".join(cells) + f" | {total} |")
    totals = [str(sum(counts[k, c] for k in KINDS)) for c in commands]
    rows.append("| all | " + " | ".join(totals) + f" | {len(cases)} |")
    return "\n".join(rows)


def kinds_table(cases: list[Case] = CASES) -> str:
    """One row per kind: how many cases, and what the tool does."""
    counts = Counter(c.kind for c in cases)
    rows = ["| kind | cases | what yolo does |", "|---|---|---|"]
    rows += [f"| {k} | {counts[k]} | {what} |" for k, what in KINDS.items() if counts[k]]
    return "\n".join(rows)


if __name__ == "__main__":
    if "--table" in sys.argv:
        print(table())
        print()
        print(kinds_table())
    else:
        print(f"{len(CASES)} cases; --table prints them by command and kind")
