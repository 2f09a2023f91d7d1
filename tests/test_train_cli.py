"""yolo train on the command line: every numeric option in range before any work, run folders
refused in one line, resumes that cannot be made refused in one line, exit status by outcome,
Ctrl-C and SIGTERM saving the run."""

import math
import os
import re
import signal
import threading
import time

import pytest
from click.testing import CliRunner
from train_helpers import cli_args, leftovers, replace_entry, tiny_options, write_tiny_scenes

from yolo_cli.cli import cli
from yolo_cli.config import LIMITS
from yolo_cli.errors import YoloError


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    return write_tiny_scenes(tmp_path_factory.mktemp("scenes") / "scenes")


def invoke(args):
    return CliRunner().invoke(cli, [str(a) for a in args])


BAD_VALUES = [
    ("--lr", "nan"),
    ("--lr", "-1"),
    ("--lr", "0"),
    ("--lr", "inf"),
    ("--img-size", "0"),
    ("--img-size", "-32"),
    ("--img-size", "65536"),
    ("--img-size", "100"),
    ("--epochs", "0"),
    ("--batch", "0"),
    ("--width", "nan"),
    ("--width", "0"),
    ("--lambda-obj", "0"),
    ("--lambda-obj", "nan"),
    ("--seed", "-1"),
    ("--num-anchors", "10"),
    ("--freeze", "1001"),
    ("--max-steps", "0"),
    ("--minutes", "nan"),
    ("--minutes", "0"),
    ("--patience", "-1"),
    ("--val-share", "0"),
    ("--val-share", "1.5"),
]


@pytest.mark.parametrize("option, value", BAD_VALUES)
def test_out_of_range_options_are_refused_before_any_work(tmp_path, monkeypatch, option, value):
    monkeypatch.chdir(tmp_path)
    result = invoke(["train", option, value, "--data", tmp_path / "no-such-dataset"])
    assert result.exit_code == 2, result.output
    assert f"'{option}'" in result.output and "no-such-dataset" not in result.output
    assert list(tmp_path.iterdir()) == []


FIELDS = {"--lambda-obj": "lambda_obj", "--img-size": "img_size"}


@pytest.mark.parametrize("option, value", BAD_VALUES)
def test_the_library_refuses_the_same_values(option, value):
    from yolo_cli.train import TrainConfig

    field = FIELDS.get(option, option[2:].replace("-", "_"))
    floats = ("lr", "width", "lambda_obj", "minutes", "val_share")
    number = float(value) if field in floats else int(value)
    with pytest.raises(YoloError, match=f"^{option} "):
        TrainConfig(**{field: number})


def test_the_library_refuses_wrong_types_and_takes_the_limits():
    from yolo_cli.train import TrainConfig

    for bad in (dict(epochs=True), dict(epochs=2.0), dict(lr="0.1"), dict(synth_n=0)):
        with pytest.raises(YoloError):
            TrainConfig(**bad)
    with pytest.raises(YoloError, match="--strategy"):
        TrainConfig(strategy="horovod")
    with pytest.raises(YoloError, match="--device"):
        TrainConfig(device="tpu")
    assert TrainConfig(lr=LIMITS.lr.high, img_size=LIMITS.img_size[1], seed=2**32 - 1)
    assert TrainConfig(img_size=32, epochs=1, lr=1e-12, patience=0).img_size == 32


@pytest.mark.parametrize(
    "out, says", [("file.txt", "is a file"), ("file.txt/run", "lies under the file")]
)
def test_unusable_out_is_one_line_before_any_work(tmp_path, out, says):
    (tmp_path / "file.txt").write_text("x")
    result = invoke(["train", "--out", tmp_path / out, "--data", tmp_path / "no-such-dataset"])
    assert result.exit_code == 2
    assert result.output == f"error: {tmp_path / out}: {says}" + result.output.split(says)[1]
    assert result.output.count("\n") == 1 and "no-such-dataset" not in result.output


def test_proc_out_is_refused(tmp_path):
    result = invoke(["train", "--out", "/proc/x", "--data", tmp_path])
    assert result.exit_code == 2
    assert result.output.startswith("error: /proc/x: cannot create the run folder")


def test_a_failed_start_leaves_no_run_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty-dataset").mkdir()
    for args in (["--out", tmp_path / "a" / "b"], []):
        result = invoke(["train", "--data", tmp_path / "empty-dataset", "--device", "cpu", *args])
        assert result.exit_code == 2 and result.output.startswith("error: "), result.output
        assert sorted(p.name for p in tmp_path.iterdir()) == ["empty-dataset"]


def test_cli_train_passes_the_loss_weights_to_the_run(scenes, tmp_path):
    from yolo_cli.modelfile import read_meta

    common = cli_args(tiny_options(scenes, epochs=1, max_steps=1))
    out = tmp_path / "obj5"
    result = invoke([*common, "--lambda-obj", "5", "--out", out])
    assert result.exit_code == 0, result.output
    assert read_meta(out / "last.keras").extra["config"]["lambda_obj"] == 5.0
    assert re.search(
        r"finished: 1/1 epochs; best val mAP@0\.5 [\d.]+, mAP@\[\.5:\.95\] [\d.]+ \(epoch 1\)",
        result.output,
    )

    refused = invoke([*common, "--lambda-obj", "0", "--out", tmp_path / "x"])
    assert refused.exit_code == 2 and "--lambda-obj" in refused.output
    assert not (tmp_path / "x").exists()


def test_resume_refuses_a_truncated_checkpoint(run_copy):
    path = run_copy / "last.keras"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    result = invoke(["train", "--resume", run_copy])
    assert result.exit_code == 2
    assert result.output.startswith(f"error: {path}: not a Keras model archive")
    assert result.output.count("\n") == 1


@pytest.mark.parametrize(
    "state, says",
    [
        (b"{not json", "corrupt run state"),
        (b"[1, 2]", "corrupt run state (not a JSON object)"),
        (b'{"version": 1, "epochs": 1}', "corrupt run state (fields"),
        (None, "holds no run state"),
    ],
)
def test_resume_refuses_a_malformed_run_state(run_copy, state, says):
    from yolo_cli.train.checkpoint import STATE_NAME

    replace_entry(run_copy / "last.keras", STATE_NAME, state)
    result = invoke(["train", "--resume", run_copy])
    assert result.exit_code == 2
    assert result.output.startswith(f"error: {run_copy / 'last.keras'}: ")
    assert says in result.output and result.output.count("\n") == 1


def test_resume_refuses_inconsistent_state_values(run_copy):
    import json
    import zipfile

    from yolo_cli.train.checkpoint import STATE_NAME

    with zipfile.ZipFile(run_copy / "last.keras") as archive:
        state = json.loads(archive.read(STATE_NAME))
    for change in ({"epochs_done": 5}, {"step": -1}, {"config": {"lr": math.inf}}):
        replace_entry(run_copy / "last.keras", STATE_NAME, json.dumps({**state, **change}).encode())
        result = invoke(["train", "--resume", run_copy])
        assert result.exit_code == 2 and "corrupt run state" in result.output, result.output


def test_resume_keeps_the_runs_own_settings(run_copy):
    result = invoke(["train", "--resume", run_copy, "--lr", "0.1", "--img-size", "96"])
    assert result.exit_code == 2
    assert "cannot change" in result.output
    assert "--lr" in result.output and "--img-size" in result.output


def test_resume_extends_a_run_from_the_command_line(run_copy):
    from yolo_cli.train.checkpoint import read_checkpoint

    done = invoke(["train", "--resume", run_copy])
    assert done.exit_code == 0 and "finished: 1/1 epochs" in done.output
    more = invoke(["train", "--resume", run_copy, "--epochs", "2"])
    assert more.exit_code == 0, more.output
    assert "finished: 2/2 epochs" in more.output
    _, meta, state = read_checkpoint(run_copy)
    assert (state.epochs_done, state.epochs, meta.extra["config"]["epochs"]) == (2, 2, 2)


def test_patience_needs_a_val_split(tmp_path):
    from yolo_cli.data.synth import write_synthetic

    data = write_synthetic(tmp_path / "noval", n=8, seed=1, size=64, fractions=(1.0, 0.0, 0.0))
    args = cli_args(tiny_options(data, tmp_path / "run", patience=2))
    result = invoke(args)
    assert result.exit_code == 2
    assert result.output == f"error: {data}: --patience needs a val split, and there is none\n"
    assert not (tmp_path / "run").exists()


def _signal_after_checkpoint(path, signum):
    """Send ``signum`` to this process as soon as ``path`` exists (from a thread)."""

    def wait():
        deadline = time.monotonic() + 120
        while not path.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        os.kill(os.getpid(), signum)

    thread = threading.Thread(target=wait, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize(
    "signum, code, outcome",
    [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")],
)
def test_signals_save_the_run_and_set_the_exit_status(scenes, tmp_path, signum, code, outcome):
    from yolo_cli.train.checkpoint import read_checkpoint

    out = tmp_path / "run"
    args = cli_args(tiny_options(scenes, out, epochs=40, max_steps=2))
    thread = _signal_after_checkpoint(out / "last.keras", signum)
    result = invoke(args)
    thread.join()
    assert result.exit_code == code, result.output
    assert f"{outcome}: " in result.output and "weights in" in result.output
    assert "stopped after epoch" in result.output
    _, _, state = read_checkpoint(out)
    assert state.epochs_done >= 1 and state.epochs_done < 40
    assert not leftovers(out)
