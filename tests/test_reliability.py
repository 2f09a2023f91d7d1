"""Every case of the bad-input corpus (tests/bad_inputs.py) through the ``yolo`` command: click's
CliRunner in this process, a child process for the cases that need a signal or a file-size
limit. Each must give its exit status, no traceback or library warning (no ``--debug``), one
line naming the file and the problem, its outputs and no temporary files, earlier outputs
intact, and the right result where a wrong one was possible."""

from __future__ import annotations

import re
import resource
import subprocess
import time
import traceback
import tracemalloc
from pathlib import Path

import pytest
from bad_inputs import CASES, COMMANDS, KINDS, Expect, Kit, child_env, table, yolo_command
from click.testing import CliRunner

from yolo_cli.cli import cli

_TEMPORARY = re.compile(r"^\..*\.tmp")  # yolo_cli.fileio's temporary names
_SOURCE_LINE = re.compile(r"\.py:\d+")  # a traceback's or a Python warning's location


@pytest.fixture(scope="session")
def kit(tmp_path_factory):
    return Kit(tmp_path_factory.mktemp("kit"))


def _params():
    return [pytest.param(c, id=c.id, marks=[pytest.mark.slow] if c.slow else []) for c in CASES]


def invoke(expect: Expect) -> tuple[int, str, float, float]:
    """Run in this process → (exit status, output as a terminal shows it, seconds, peak MB
    of Python-traced memory, 0 when not measured)."""
    if expect.memory_mb:
        tracemalloc.start()
    start = time.perf_counter()
    try:
        result = CliRunner().invoke(cli, expect.argv, env=expect.env or None)
    finally:
        seconds = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1] / 2**20 if expect.memory_mb else 0.0
        tracemalloc.stop()
    output = result.output
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        output += "".join(traceback.format_exception(result.exception))
    return result.exit_code, output, seconds, peak


def spawn(expect: Expect, cwd: Path) -> tuple[int, str, float, float]:
    """Run in a child process under ``expect.process`` (its file-size limit, its signal)."""
    plan = expect.process

    def limit():
        if plan.fsize is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (plan.fsize, plan.fsize))

    start = time.perf_counter()
    child = subprocess.Popen(
        yolo_command(expect.argv),
        cwd=cwd,
        env=child_env(expect.env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=limit,
    )
    if plan.signal is not None:
        deadline = time.monotonic() + plan.timeout
        while not plan.when.exists() and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        child.send_signal(plan.signal)
    try:
        out, err = child.communicate(timeout=plan.timeout)
    except subprocess.TimeoutExpired:
        child.kill()
        out, err = child.communicate()
    status = child.returncode if child.returncode >= 0 else 128 - child.returncode
    return status, out + err, time.perf_counter() - start, 0.0


def holds(line: str, parts: tuple[str, ...], folders: tuple[Path, ...]) -> bool:
    """Whether ``line`` holds every part: a path as it is, any other part outside the case's
    folders' paths (which hold the case's name, and so its words)."""
    bare = line
    for folder in folders:
        bare = bare.replace(str(folder), "<folder>")
    return all(p in (line if p.startswith("/") else bare) for p in parts)


def verify(
    expect: Expect, status: int, output: str, seconds: float, peak: float, tmp: Path, kit: Kit
):
    """Every promise of the corpus (tests/bad_inputs.py module doc)."""
    shown = f"\n--- output ---\n{output}"
    folders = (tmp, kit.root)
    assert "Traceback" not in output, shown
    assert not _SOURCE_LINE.search(output), "a library warning or stack line" + shown
    assert status == expect.status, f"exit status {status}, expected {expect.status}" + shown
    lines = output.splitlines()
    if expect.line:
        assert any(holds(ln, expect.line, folders) for ln in lines), (
            f"no line holds {expect.line}" + shown
        )
    if expect.status == 2:
        errors = [ln for ln in lines if ln.lower().startswith("error:")]
        assert len(errors) == 1, "expected one error line" + shown
        assert holds(errors[0], expect.line, folders), (
            f"the error line does not hold {expect.line}" + shown
        )
    for parts in expect.also:
        assert any(holds(ln, parts, folders) for ln in lines), f"no line holds {parts}" + shown
    if expect.counted:
        assert expect.counted in output, f"no {expect.counted!r}" + shown
    for path in expect.exists:
        assert path.exists(), f"{path} is missing" + shown
    for path in expect.absent:
        assert not path.exists(), f"{path} should not exist" + shown
    left = [str(p) for p in tmp.rglob("*") if _TEMPORARY.match(p.name)]
    assert not left, f"temporary files left: {left}" + shown
    if expect.seconds is not None:
        assert seconds < expect.seconds, f"took {seconds:.1f} s" + shown
    if expect.memory_mb is not None:
        assert peak < expect.memory_mb, f"peak {peak:.0f} MB" + shown
    if expect.check is not None:
        try:
            expect.check(output)
        except AssertionError as e:
            raise AssertionError(f"{e}{shown}") from None


@pytest.mark.parametrize("case", _params())
def test_case(case, kit, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    expect = case.build(tmp_path, kit)
    before = {p: p.read_bytes() for p in expect.intact}
    if expect.process is None:
        status, output, seconds, peak = invoke(expect)
    else:
        status, output, seconds, peak = spawn(expect, tmp_path)
    verify(expect, status, output, seconds, peak, tmp_path, kit)
    for path, data in before.items():
        assert path.read_bytes() == data, f"{path} changed"


def test_the_corpus_covers_every_command_and_kind():
    assert {c.command for c in CASES} == set(COMMANDS)
    assert {c.kind for c in CASES} == set(KINDS)
    assert len({c.id for c in CASES}) == len(CASES)
    assert len(CASES) >= 180
    assert table().splitlines()[-1].endswith(f"| {len(CASES)} |")
