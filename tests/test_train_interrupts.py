"""Interrupts and resumes are exact: a run stopped by SIGINT, SIGTERM and SIGKILL at random
moments (exit 130, 143 and -9, the summary saying which, no traceback) and resumed each time
ends with the weights, best model and history of a run never stopped, bit for bit, and leaves
no temporary files behind."""

import os
import random
import signal
import time

import pytest
from train_helpers import assert_bit_equal, cli_args, leftovers, tiny_options, write_tiny_scenes

EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143, signal.SIGKILL: -signal.SIGKILL}
SAYS = {signal.SIGINT: "interrupted: ", signal.SIGTERM: "terminated: "}  # the summary line


def _finish(proc, timeout=600) -> tuple[int, str]:
    """The exit status and the output, stdout then stderr."""
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out + err


@pytest.mark.slow
def test_resume_after_sigint_sigterm_and_sigkill_at_random_moments_is_exact(tmp_path):
    from train_helpers import yolo_process

    seed = int(os.environ.get("YOLO_TEST_SEED", time.time_ns() % 10_000))
    rng = random.Random(seed)
    data = write_tiny_scenes(tmp_path / "scenes")
    options = tiny_options(data, epochs=6, max_steps=3)
    reference, cut = tmp_path / "reference", tmp_path / "cut"
    code, output = _finish(yolo_process([*cli_args(options), "--out", str(reference)]))
    assert code == 0, output[-3000:]

    proc = yolo_process([*cli_args(options), "--out", str(cut)])
    started = time.monotonic()
    log = []
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
        if not log:  # the first process: somewhere after its first checkpoint
            while not (cut / "last.keras").exists() and proc.poll() is None:
                time.sleep(0.02)
            time.sleep(rng.uniform(0, 2.5))
        else:  # a resumed one: anywhere after Python started, setup included
            time.sleep(max(0.0, rng.uniform(1.5, 10) - (time.monotonic() - started)))
        if proc.poll() is None:
            proc.send_signal(signum)
        code, output = _finish(proc)
        log.append((signum.name, code))
        assert code in (EXIT[signum], 0), f"seed {seed}, {log}: {output[-3000:]}"
        if code == 0:
            break
        assert "Traceback" not in output, f"seed {seed}: {output[-3000:]}"
        assert SAYS.get(signum, "") in output, f"seed {seed}: {output[-3000:]}"
        proc, started = yolo_process(["train", "--resume", str(cut)]), time.monotonic()
    else:
        code, output = _finish(proc)
        assert code == 0, f"seed {seed}, {log}: {output[-3000:]}"

    context = f"seed {seed}, signals and exit codes {log}"
    for name in ("last.keras", "best.keras"):
        try:
            assert_bit_equal(reference / name, cut / name)
        except AssertionError as e:
            raise AssertionError(f"{name} ({context}): {e}") from None
    history = (reference / "history.csv").read_text()
    assert (cut / "history.csv").read_text() == history, context
    assert not leftovers(cut), context


def test_a_signal_during_setup_is_not_caught_as_the_failure_of_what_it_interrupted():
    from yolo_cli.train.loop import Outcome, StopSignals, _SetupStopped

    caught = []
    with pytest.raises(_SetupStopped), StopSignals() as signals:
        try:  # as a weights loader does around a file that may not fit
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
        except Exception as e:
            caught.append(e)
    assert caught == []
    assert signals.outcome() is Outcome.TERMINATED
