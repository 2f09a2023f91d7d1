"""Every command through the command line: one spelling per idea, help for every option and
argument, older spellings still accepted but never shown, --debug and --quiet before or after
the command's name, a start without TensorFlow's log lines, and the two console scripts."""

from __future__ import annotations

import configparser
import os
import re
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from yolo_cli.cli import cli
from yolo_cli.config import PACKAGE_ROOT
from yolo_cli.data.synth import write_synthetic
from yolo_cli.errors import YoloError

SAMPLE = PACKAGE_ROOT / "data" / "samples" / "dog.jpg"

# idea: (the spelling --help shows, spellings accepted but not shown)
SPELLINGS = {
    "a dataset read": ("--data", ()),
    "a model read": ("--model", ("--yolo-model", "--window-model")),
    "a path written": ("--out", ()),
    "the input side": ("--img-size", ("--imgsz", "--size")),
    "the anchor count": ("--num-anchors", ("--anchors", "--k")),
    "how many images": ("--n-images", ("--n",)),
    "the format written": ("--format", ("--to",)),
    "the split": ("--split", ()),
    "the seed": ("--seed", ()),
    "the device": ("--device", ()),
    "images per model call": ("--batch", ()),
    "the score threshold": ("--conf", ()),
    "the NMS IoU": ("--nms-iou", ()),
    "detections kept per image": ("--max-det", ()),
    "the video frame stride": ("--every", ("--vid-stride",)),
}
# the commands that offer an idea: each of them, and no other, spells it so
OFFERED = {
    "--data": {"anchors", "bench", "data check", "data convert", "eval", "export", "train"},
    "--model": {"bench", "detect", "eval", "export", "info"},
    "--img-size": {"anchors", "data synth", "detect", "export", "train"},
    "--num-anchors": {"anchors", "train"},
    "--n-images": {"bench", "data synth"},
    "--format": {"data convert", "export"},
}
# the only positional arguments --help shows; a dataset, a model or a folder written is an option
SHOWN_ARGUMENTS = {"detect": ["sources"], "import": ["cfg", "weights"]}


def commands(group: click.Group = cli, path: tuple[str, ...] = ()):
    """``(name, command)`` for the root group and every command and subcommand below it."""
    yield " ".join(path), group
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from commands(command, (*path, name))
        else:
            yield " ".join((*path, name)), command


def spellings(param: click.Option) -> tuple[list[str], list[str]]:
    """An option's shown spellings and its hidden ones."""
    aliases = list(getattr(param, "aliases", ()))
    shown = [o for o in param.opts + param.secondary_opts if o not in aliases]
    return shown, aliases


def shown_arguments(command: click.Command) -> list[click.Argument]:
    ctx = click.Context(command)
    return [p for p in command.params if isinstance(p, click.Argument) and p.get_usage_pieces(ctx)]


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    return write_synthetic(tmp_path_factory.mktemp("scenes") / "s", n=12, seed=4, size=64)


# --- help -------------------------------------------------------------------------------------


def test_every_option_has_help_and_every_argument_is_in_its_command_s_text():
    missing = []
    for name, command in commands():
        ctx = click.Context(command, info_name=name)
        for param in command.get_params(ctx):
            if isinstance(param, click.Option) and not param.hidden and not param.help:
                missing.append(f"yolo {name} {param.opts[0]}")
        for argument in shown_arguments(command):
            if argument.name.upper() not in (command.help or ""):
                missing.append(f"yolo {name} {argument.name.upper()}")
    assert missing == []


@pytest.mark.parametrize("name", [name for name, _ in commands()])
def test_help_shows_no_hidden_spelling(name):
    result = invoke(*name.split(), "--help")
    assert result.exit_code == 0, result.output
    hidden = {alias for _, aliases in SPELLINGS.values() for alias in aliases}
    shown = {h for h in hidden if re.search(rf"(?<![\w-]){re.escape(h)}(?![\w-])", result.output)}
    assert shown == set()
    assert "--debug" in result.output and "--quiet" in result.output


def test_help_names_the_default_model_and_the_formats():
    assert "Default: coco (models/coco.keras)" in invoke("info", "--help").output
    assert "--format [voc|coco|yolo]" in invoke("data", "convert", "--help").output


# --- one spelling per idea --------------------------------------------------------------------


def test_one_spelling_per_idea_in_every_command():
    offered: dict[str, set[str]] = {}
    wrong = []
    for name, command in commands():
        for param in command.params:
            if not isinstance(param, click.Option):
                continue
            shown, aliases = spellings(param)
            for canonical, accepted in SPELLINGS.values():
                if {canonical, *accepted} & {*shown, *aliases}:
                    if shown != [canonical] or not set(aliases) <= set(accepted):
                        wrong.append(f"yolo {name}: {shown} (hidden {aliases}), not {canonical}")
                    offered.setdefault(canonical, set()).add(name)
    assert wrong == []
    for canonical, where in OFFERED.items():
        assert offered[canonical] == where, canonical
    img_sizes = [p for _, c in commands() for p in c.params if p.name == "img_size"]
    assert all("--imgsz" in p.aliases for p in img_sizes)  # ultralytics' spelling, everywhere


def test_positional_arguments_are_sources_and_darknet_files_only():
    shown = {
        name: [a.name for a in shown_arguments(command)]
        for name, command in commands()
        if shown_arguments(command)
    }
    assert shown == SHOWN_ARGUMENTS


# --- older spellings: accepted, the same result ----------------------------------------------


def test_older_spellings_give_the_same_results(tmp_path, scenes):
    pairs = [
        (["data", "check", scenes], ["data", "check", "--data", scenes]),
        (["anchors", scenes, "--k", 2], ["anchors", "--data", scenes, "--num-anchors", 2]),
        (["anchors", "--data", scenes, "--anchors", 2], ["anchors", "--data", scenes, "--k", 2]),
        (["anchors", "--data", scenes, "--imgsz", 96], ["anchors", "--data", scenes, "--img-size", 96]),
    ]  # fmt: skip
    for old, new in pairs:
        before, after = invoke(*old), invoke(*new)
        assert before.exit_code == after.exit_code == 0, before.output + after.output
        assert before.stdout == after.stdout
    old = invoke("data", "synth", tmp_path / "a", "--n", 3, "--size", 64, "--seed", 1)
    new = invoke("data", "synth", "--out", tmp_path / "b", "--n-images", 3, "--img-size", 64, "--seed", 1)  # fmt: skip
    assert old.exit_code == new.exit_code == 0, old.output + new.output
    assert old.stdout.replace(str(tmp_path / "a"), "X") == new.stdout.replace(
        str(tmp_path / "b"), "X"
    )
    old = invoke("data", "convert", scenes, tmp_path / "c", "--to", "coco")
    new = invoke("data", "convert", "--data", scenes, "--out", tmp_path / "d", "--format", "coco")
    assert old.exit_code == new.exit_code == 0, old.output + new.output
    assert (
        old.stdout.replace("/c;", "/d;").replace(str(tmp_path / "c"), str(tmp_path / "d"))
        == new.stdout
    )


def test_a_value_given_both_ways_or_not_at_all_is_a_usage_error(tmp_path, scenes):
    both = invoke("data", "check", scenes, "--data", scenes)
    assert both.exit_code == 2
    assert f"Error: --data given twice; give '{scenes}' once" in both.output
    missing = invoke("data", "convert", "--data", scenes, "--format", "coco")
    assert missing.exit_code == 2 and "Error: Missing option '--out'." in missing.output
    bad = invoke("anchors", "--data", scenes, "--k", 10)  # names the spelling typed too
    assert bad.exit_code == 2 and "Invalid value for '--num-anchors' / '--k': 10" in bad.output
    bad = invoke("anchors", "--data", scenes, "--num-anchors", 0)
    assert bad.exit_code == 2 and "Invalid value for '--num-anchors': 0" in bad.output


def test_info_takes_a_shipped_model_s_name_as_option_or_positional():
    by_option, by_argument = invoke("info", "--model", "coco"), invoke("info", "coco")
    assert by_option.exit_code == by_argument.exit_code == 0, by_option.output
    assert by_option.stdout == by_argument.stdout
    assert (
        by_option.stdout.startswith("model: ") and "coco.keras" in by_option.stdout.splitlines()[0]
    )
    assert "classes (80): person, bicycle, car" in by_option.stdout


# --- --debug and --quiet ---------------------------------------------------------------------


@pytest.mark.parametrize("where", ["before", "after"])
def test_debug_before_or_after_the_command_shows_the_traceback(tmp_path, where):
    args = ["info", "--model", tmp_path / "nope.keras"]
    plain = invoke(*args)
    assert (plain.exit_code, plain.output.strip()) == (
        2,
        f"error: {tmp_path / 'nope.keras'}: model file not found",
    )
    debug = invoke("--debug", *args) if where == "before" else invoke(*args, "--debug")
    assert isinstance(debug.exception, YoloError)


def speed_less(summary: str) -> str:
    return re.sub(r"[\d.]+ images/s", "N images/s", summary)


@pytest.mark.parametrize("where", ["before", "after"])
def test_quiet_drops_skip_lines_not_the_summary(tmp_path, where):
    missing = tmp_path / "missing.jpg"
    args = ["detect", SAMPLE, missing, "--no-save", "--out", tmp_path / "run"]
    loud = invoke(*args)
    assert loud.exit_code == 0, loud.output
    skip, summary = loud.stderr.splitlines()
    assert skip == f"{missing}: no such file or folder"
    quiet = invoke("--quiet", *args) if where == "before" else invoke(*args, "--quiet")
    assert quiet.exit_code == 0, quiet.output
    (line,) = quiet.stderr.splitlines()
    assert speed_less(line) == speed_less(summary)


def test_quiet_drops_notices_and_problem_lines_not_the_summary(tmp_path, scenes):
    """A YOLO txt folder without splits (a notice says it is scored whole) holding an image
    that does not decode (a problem line, then the problems' summary)."""
    flat = tmp_path / "flat"
    (flat / "images").mkdir(parents=True)
    (flat / "labels").mkdir()
    for image in sorted((scenes / "images" / "train").iterdir())[:4]:
        os.link(image, flat / "images" / image.name)
        os.link(
            scenes / "labels" / "train" / f"{image.stem}.txt", flat / "labels" / f"{image.stem}.txt"
        )
    (flat / "images" / "broken.jpg").write_bytes(b"not a jpeg")
    (flat / "labels" / "broken.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    (flat / "data.yaml").write_text("names: [pedestrian, car, motorcycle]\n")
    preds = tmp_path / "preds.json"
    preds.write_text("[]")
    args = ["eval", "--data", flat, "--predictions", preds, "--out"]
    loud = invoke(*args, tmp_path / "a")
    quiet = invoke("--quiet", *args, tmp_path / "b")
    assert loud.exit_code == quiet.exit_code == 0, loud.output + quiet.output
    assert loud.stderr.splitlines() == [
        f"{flat}: no train/val/test split of its own; scoring all 4 images",
        f"{flat / 'images' / 'broken.jpg'}: not a readable image (corrupt or unsupported "
        "format); sample dropped",
        "1 problems: 1 corrupt-image",
    ]
    assert quiet.stderr.splitlines() == ["1 problems: 1 corrupt-image"]
    assert quiet.stdout == loud.stdout.replace(str(tmp_path / "a"), str(tmp_path / "b"))


# --- a quiet start, two console scripts -------------------------------------------------------


def script(name: str) -> str:
    path = Path(sys.executable).parent / name
    assert path.exists(), f"{path}: install the package (pip install -e .) for its scripts"
    return str(path)


def test_both_console_scripts_are_declared_and_installed():
    parser = configparser.ConfigParser()
    parser.read(PACKAGE_ROOT / "setup.cfg")
    declared = parser["options.entry_points"]["console_scripts"].split("\n")
    entries = dict(line.replace(" ", "").split("=") for line in declared if "=" in line)
    assert entries == {"yolo": "yolo_cli.cli:main", "yolo-cli": "yolo_cli.cli:main"}
    done = subprocess.run([script("yolo-cli"), "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.startswith("Usage: yolo-cli [OPTIONS] COMMAND")


@pytest.mark.slow
def test_detect_prints_one_line_on_stderr_and_debug_shows_more(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("TF_CPP")}
    run = [script("yolo"), "detect", str(SAMPLE), "--out", str(tmp_path / "run")]
    done = subprocess.run(run, capture_output=True, text=True, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == [done.stderr.strip()], done.stderr
    assert done.stderr.startswith("1 image; ") and f"results in {tmp_path / 'run'}" in done.stderr
    debug = subprocess.run([*run, "--debug"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert debug.returncode == 0, debug.stderr
    assert "yolo_cli.device: device: /CPU:0" in debug.stderr  # a debug log
    assert debug.stderr.splitlines()[-1].startswith("1 image; ")


def test_native_log_lines_below_tf_cpp_min_log_level_are_dropped(capfd):
    from yolo_cli.nativelog import native_stderr_filtered

    lines = [
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n",
        "I0000 00:00:1796040189.676644   31120 port.cc:153] oneDNN custom operations are on.\n",
        "W0000 00:00:1796040189.676993   31120 cudart_stub.cc:31] Could not find cuda drivers\n",
        "E1130 12:00:01.123456   31120 cuda_platform.cc:52] failed call to cuInit\n",
        "F1130 12:00:01.123456   31120 check.cc:7] Check failed\n",
        "a line of anything else\n",
    ]
    for level, kept in [(3, [4, 5]), (2, [3, 4, 5]), (1, [0, 2, 3, 4, 5]), (0, range(6))]:
        with native_stderr_filtered(level):
            os.write(2, "".join(lines).encode())
        assert capfd.readouterr().err == "".join(lines[i] for i in kept), level
