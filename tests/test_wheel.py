"""The wheel carries the package and its shipped models: built, installed into a fresh venv
outside the checkout, ``yolo detect`` runs there with the default model."""

import configparser
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from yolo_cli.config import PACKAGE_ROOT, SHIPPED_MODELS

SAMPLE = PACKAGE_ROOT / "data" / "samples" / "dog.jpg"


def _setup_cfg() -> configparser.ConfigParser:
    parser = configparser.ConfigParser()
    parser.read(PACKAGE_ROOT / "setup.cfg")
    return parser


def test_setup_lists_every_package():
    """setup.cfg lists its packages (to map models/ into yolo_cli.models), so a new subpackage
    must be added there or the wheel would lack it."""
    listed = set(_setup_cfg()["options"]["packages"].split())
    on_disk = {
        ".".join(p.parent.relative_to(PACKAGE_ROOT).parts)
        for p in (PACKAGE_ROOT / "yolo_cli").rglob("__init__.py")
    }
    missing = sorted(on_disk - listed)
    assert not missing, f"add {missing} to setup.cfg's [options] packages"
    assert listed - on_disk == {"yolo_cli.models"}
    assert _setup_cfg()["options"]["package_dir"].split() == ["yolo_cli.models", "=", "models"]


def test_shipped_models_are_found_through_the_package():
    from importlib.resources import files

    from yolo_cli.config import MODELS_DIR

    for name in SHIPPED_MODELS.values():
        assert (files("yolo_cli.models") / name).is_file()
        assert (MODELS_DIR / name).is_file()


@pytest.mark.slow
def test_wheel_installs_and_detects_outside_the_checkout(tmp_path):
    dist = tmp_path / "dist"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(PACKAGE_ROOT),
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(dist),
        ],
        check=True,
        cwd=tmp_path,
    )
    (wheel,) = dist.glob("yolo_cli-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        for name in SHIPPED_MODELS.values():
            packed = archive.read(f"yolo_cli/models/{name}")
            assert packed == (PACKAGE_ROOT / "models" / name).read_bytes()
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    # the dependencies (TensorFlow, OpenCV, …) come from this environment: its site-packages
    # is appended to the fresh venv's path; its own editable yolo_cli is not (a .pth line adds
    # a folder, it does not run that folder's .pth files)
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    deps = [p for p in sys.path if p.endswith("site-packages")]
    Path(site, "outer_packages.pth").write_text("\n".join(deps) + "\n")
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
        check=True,
    )
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    where = subprocess.run(
        [str(python), "-c", "import yolo_cli.config as c; print(c.__file__); print(c.MODELS_DIR)"],
        capture_output=True,
        text=True,
        check=True,
        cwd=work,
        env=env,
    ).stdout.split()
    assert all(Path(p).is_relative_to(venv) for p in where), where
    yolo = venv / "bin" / "yolo"
    version = subprocess.run([str(yolo), "--version"], capture_output=True, text=True, cwd=work)
    assert "0." in version.stdout
    result = subprocess.run(
        [str(yolo), "detect", str(SAMPLE), "--json", "--no-save"],
        capture_output=True,
        text=True,
        cwd=work,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout.splitlines()[0])
    assert record["detections"], record
