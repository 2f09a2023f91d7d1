"""The command shell: fast help, one-line errors with exit status 2, device choice."""

import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from yolo_cli import __version__
from yolo_cli.cli import cli
from yolo_cli.device import parse_device, select_device, select_strategy
from yolo_cli.errors import YoloError


def test_help_and_version_do_not_import_tensorflow():
    code = (
        "import sys; from yolo_cli.cli import cli\n"
        "try:\n    cli(['--help'])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('tensorflow', 'keras', 'cv2') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"
    assert "detect" in out.stdout and "train" in out.stdout and "eval" in out.stdout
    version = subprocess.run(
        [sys.executable, "-m", "yolo_cli.cli", "--version"], capture_output=True, text=True
    )
    assert version.returncode == 0 and __version__ in version.stdout


@pytest.mark.parametrize("choice, expected", [(None, "True"), ("0", "False"), ("1", "True")])
def test_onednn_is_on_unless_the_user_turns_it_off(choice, expected):
    code = (
        "import yolo_cli, tensorflow\n"
        "from tensorflow.python.util import _pywrap_util_port\n"
        "print(_pywrap_util_port.IsMklEnabled())"
    )
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    if choice is not None:
        env["TF_ENABLE_ONEDNN_OPTS"] = choice
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == expected


def test_user_error_is_one_line_and_status_2(tmp_path):
    missing = tmp_path / "nope.keras"
    result = CliRunner().invoke(cli, ["info", "--model", str(missing)])
    assert result.exit_code == 2
    assert result.output.strip() == f"error: {missing}: model file not found"


def test_debug_shows_the_traceback(tmp_path):
    result = CliRunner().invoke(cli, ["--debug", "info", "--model", str(tmp_path / "nope.keras")])
    assert isinstance(result.exception, YoloError)


@pytest.mark.parametrize(
    "spec,expected",
    [
        ("auto", ("auto", None)),
        ("CPU", ("cpu", None)),
        ("gpu", ("gpu", None)),
        ("gpu:1", ("gpu", 1)),
    ],
)
def test_parse_device(spec, expected):
    assert parse_device(spec) == expected


def test_bad_device_specs():
    with pytest.raises(YoloError, match="expected one of"):
        parse_device("tpu")


def test_device_choice_on_this_machine():
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    assert select_device("cpu").name == "/CPU:0"
    assert select_device("auto").kind == ("gpu" if gpus else "cpu")
    if not gpus:
        with pytest.raises(YoloError, match="no GPU"):
            select_device("gpu")
        result = CliRunner().invoke(cli, ["train", "--device", "gpu:0", "--data", "x"])
        assert result.exit_code == 2
        assert (
            result.output.strip() == "error: --device gpu:0: TensorFlow sees no GPU on this machine"
        )


def test_strategy_choice():
    import tensorflow as tf

    assert isinstance(select_strategy("none"), tf.distribute.OneDeviceStrategy)
    with pytest.raises(YoloError, match="expected one of"):
        select_strategy("horovod")
