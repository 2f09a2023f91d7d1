import os
import shutil

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# each of pytest-xdist's workers (and the yolo processes its tests start) takes its share of the
# cores for TensorFlow's op threads: more threads than cores only wait on one another
if "PYTEST_XDIST_WORKER_COUNT" in os.environ:
    os.environ.setdefault(
        "TF_NUM_INTRAOP_THREADS",
        str(max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))),
    )


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory):
    """A run of one epoch of one step on tiny synthetic scenes (tests change copies of it:
    :func:`run_copy`)."""
    from train_helpers import tiny_config, write_tiny_scenes

    from yolo_cli.train import train

    scenes = write_tiny_scenes(tmp_path_factory.mktemp("finished-scenes") / "scenes")
    out = tmp_path_factory.mktemp("runs") / "done"
    train(tiny_config(scenes, out, epochs=1, max_steps=1))
    return out


@pytest.fixture
def run_copy(finished_run, tmp_path):
    """A copy of :func:`finished_run` this test may change."""
    return shutil.copytree(finished_run, tmp_path / "run")
