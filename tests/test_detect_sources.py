"""``yolo detect`` on live and remote sources: an HTTP server on 127.0.0.1 (started here)
serves an MP4 clip, MJPEG streams (multipart/x-mixed-replace of JPEG frames) and images;
list files; cameras; Ctrl-C in the middle of a stream."""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import numpy as np
import pytest
from detect_helpers import (
    LANDSCAPE,
    decoded_frames,
    detect,
    model_file,
    problem_lines,
    records,
    scene,
    write_rgb,
)

__all__ = ["model_file"]  # a fixture

CLIP_FRAMES = 6
MJPEG_FRAMES = 5
BOUNDARY = b"frame"


def _mp4_bytes(tmp: Path, image: np.ndarray) -> bytes:
    h, w = image.shape[:2]
    path = tmp / "clip.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (w, h))
    for _ in range(CLIP_FRAMES):
        writer.write(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    writer.release()
    return path.read_bytes()


def _encoded(image: np.ndarray, ext: str) -> bytes:
    ok, data = cv2.imencode(ext, cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    assert ok
    return data.tobytes()


class _Handler(BaseHTTPRequestHandler):
    """Routes: /clip.mp4, /live (MJPEG, MJPEG_FRAMES frames), /endless (MJPEG until the client
    goes), /scene.png, /photo (a JPEG without extension); anything else 404."""

    files: dict  # path → (content type, bytes)
    jpeg: bytes

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        if self.path in self.files:
            kind, body = self.files[self.path]
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif self.path in ("/live", "/endless"):
            self.send_response(200)
            kind = f"multipart/x-mixed-replace; boundary={BOUNDARY.decode()}"
            self.send_header("Content-Type", kind)
            self.end_headers()
            n = 0
            try:
                while self.path == "/endless" or n < MJPEG_FRAMES:
                    part = b"--%s\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n"
                    self.wfile.write(part % (BOUNDARY, len(self.jpeg)) + self.jpeg + b"\r\n")
                    n += 1
                    if self.path == "/endless":
                        time.sleep(0.05)
            except (BrokenPipeError, ConnectionResetError):
                pass
        else:
            self.send_error(404)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """Base URL of the test server."""
    image, _ = scene(*LANDSCAPE)
    handler = type(
        "Handler",
        (_Handler,),
        {
            "files": {
                "/clip.mp4": ("video/mp4", _mp4_bytes(tmp_path_factory.mktemp("clip"), image)),
                "/scene.png": ("image/png", _encoded(image, ".png")),
                "/photo": ("image/jpeg", _encoded(image, ".jpg")),
            },
            "jpeg": _encoded(image, ".jpg"),
        },
    )
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_mp4_and_mjpeg_streams_over_http(tmp_path, model_file, server):
    _, box = scene(*LANDSCAPE)
    out = tmp_path / "out"
    clip, live = f"{server}/clip.mp4", f"{server}/live"
    result = detect(clip, live, "--model", model_file, "--json", "--save-txt", "--out", out)
    assert result.exit_code == 0, result.output

    got = records(result)
    assert [(r["file"], r["frame"]) for r in got] == [(clip, i) for i in range(CLIP_FRAMES)] + [
        (live, i) for i in range(MJPEG_FRAMES)
    ]
    for r in got:
        (det,) = r["detections"]
        np.testing.assert_allclose(det["xyxy"], box, atol=2e-3)
    assert len(decoded_frames(out / "clip.mp4")) == CLIP_FRAMES
    assert len(decoded_frames(out / "live.mp4")) == MJPEG_FRAMES
    labels = sorted(p.name for p in (out / "labels").iterdir())
    assert labels == sorted(
        [f"clip_{i}.txt" for i in range(CLIP_FRAMES)]
        + [f"live_{i}.txt" for i in range(MJPEG_FRAMES)]
    )
    frames = CLIP_FRAMES + MJPEG_FRAMES
    assert result.stderr.splitlines() == [result.stderr.splitlines()[-1]]
    assert result.stderr.startswith(f"0 images, 2 streams ({frames} frames); {frames} car;")


def test_image_urls_by_extension_and_by_content_type(tmp_path, model_file, server):
    _, box = scene(*LANDSCAPE)
    out = tmp_path / "out"
    urls = [f"{server}/scene.png", f"{server}/photo"]
    result = detect(*urls, "--model", model_file, "--json", "--out", out)
    assert result.exit_code == 0, result.output
    got = records(result)
    assert [r["file"] for r in got] == urls
    for r in got:
        assert (r["width"], r["height"]) == LANDSCAPE[:2]
        np.testing.assert_allclose(r["detections"][0]["xyxy"], box, atol=2e-3)
    assert sorted(p.name for p in out.iterdir()) == ["photo.jpg", "scene.png"]
    assert "2 images; 2 car;" in result.stderr


def test_dead_urls_are_one_line_each_and_exit_2(tmp_path, model_file, server):
    refused = f"http://127.0.0.1:{closed_port()}/cam.mjpg"
    missing = f"{server}/missing"
    result = detect(refused, missing, "--model", model_file, "--out", tmp_path / "out")
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        f"{refused}: cannot connect (Connection refused)",
        f"{missing}: HTTP 404 Not Found",
        "error: nothing to detect on: no image or video among the sources",
    ]
    assert not (tmp_path / "out").exists()


def test_dead_stream_and_missing_image_url_exit_2(tmp_path, model_file, server):
    rtsp = f"rtsp://127.0.0.1:{closed_port()}/cam"
    image = f"{server}/nothing.jpg"  # an image by its name: fetched when its turn comes
    result = detect(rtsp, image, "--model", model_file, "--out", tmp_path / "out")
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        f"{rtsp}: cannot open stream",
        f"{image}: HTTP 404 Not Found",
        "error: no input could be processed (2 skipped)",
    ]


@pytest.mark.skipif(Path("/dev/video0").exists(), reason="this machine has a camera")
def test_camera_index_without_a_camera(tmp_path, model_file):
    result = detect("0", "--model", model_file, "--out", tmp_path / "out")
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        "camera 0: cannot open stream",
        "error: no input could be processed (1 skipped)",
    ]


def test_list_file_of_paths_and_urls(tmp_path, model_file, server, monkeypatch):
    image, box = scene(*LANDSCAPE)
    (tmp_path / "lists").mkdir()
    write_rgb(tmp_path / "lists" / "near.png", image)  # relative to the list's folder
    far = write_rgb(tmp_path / "far.png", image)
    listing = tmp_path / "lists" / "inputs.txt"
    listing.write_text(
        f"# inputs\nnear.png\n\n{far}\n{server}/photo\nmissing.png\n{listing}\n", encoding="utf-8"
    )
    monkeypatch.chdir(tmp_path)
    result = detect(listing, "--model", model_file, "--json", "--no-save")
    assert result.exit_code == 0, result.output
    assert [r["file"] for r in records(result)] == [
        str(tmp_path / "lists" / "near.png"),
        str(far),
        f"{server}/photo",
    ]
    assert problem_lines(result) == [
        f"{listing}:6: missing.png: no such file or folder",
        f"{listing}:7: {listing}: the list includes itself",
    ]
    assert result.stderr.splitlines()[-1].startswith("3 images, 2 skipped; 3 car;")


@pytest.mark.parametrize("inherited", [signal.SIG_DFL, signal.SIG_IGN], ids=["shell", "script_bg"])
def test_ctrl_c_keeps_a_valid_video_labels_and_json(tmp_path, model_file, server, inherited):
    """SIGINT to the real command while it reads an endless MJPEG stream, also when it started
    with SIGINT ignored, as a script's background job does (``yolo detect … &``, nohup)."""
    out, coco = tmp_path / "out", tmp_path / "found.json"
    yolo = Path(sys.executable).with_name("yolo")
    command = [yolo, "detect", f"{server}/endless", "--model", model_file, "--save-txt"]
    command += ["--save-json", coco, "--out", out]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        preexec_fn=lambda: signal.signal(signal.SIGINT, inherited),
    )
    try:
        deadline = time.monotonic() + 240
        while len(list(out.glob("labels/*.txt"))) < 5:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no frames within the deadline"
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, stderr
    stderr = stderr.decode()
    assert "Traceback" not in stderr and stderr.count("interrupted") == 1
    line = stderr.splitlines()[-1]  # after TensorFlow's start-up lines, if any
    assert line.startswith("interrupted: 0 images, 1 stream (")
    frames = int(line.split("(")[1].split()[0])
    assert frames >= 5
    assert len(decoded_frames(out / "endless.mp4")) == frames
    assert len(json.loads(coco.read_text())) == frames  # one box per frame
    assert len(list(out.glob("labels/*.txt"))) in (frames, frames + 1)  # + one cut short
    assert not list(out.rglob(".*.tmp*"))
