"""TensorFlow's start-up lines on stderr, held to ``TF_CPP_MIN_LOG_LEVEL``.

While TensorFlow's shared libraries load, their C++ code logs through absl before absl is set
up, so every line reaches stderr whatever ``TF_CPP_MIN_LOG_LEVEL`` says: "All log messages
before absl::InitializeLog() is called are written to STDERR", "oneDNN custom operations are
on", "Could not find cuda drivers", once per library that carries a copy of absl. No variable
read before the import silences them (``TF_ENABLE_ONEDNN_OPTS=0`` would drop one of them by
turning oneDNN off, which changes speed and numerics). :func:`filter_tensorflow_import` lets
the import of ``tensorflow`` write into a file instead of stderr and passes on what it wrote,
less the log lines below ``TF_CPP_MIN_LOG_LEVEL`` (0: all, 1: no INFO, 2: no WARNING,
3: no ERROR).
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import os
import re
import sys
import tempfile

# absl's line prefix: severity, MMDD hh:mm:ss.micros (before absl is set up: 0000 00:00:
# and seconds since 1970), thread id, file:line]
_LOG_LINE = re.compile(r"([IWEF])\d{4} \d\d:\d\d:\d+\.\d+ +\d+ [^\s\]]+:\d+\] ")
_ABSL_PREAMBLE = "WARNING: All log messages before absl::InitializeLog() is called"
_SEVERITY = {"I": 0, "W": 1, "E": 2, "F": 3}


def min_log_level() -> int:
    """``TF_CPP_MIN_LOG_LEVEL`` as TensorFlow reads it: 0 when unset or not a number."""
    try:
        return int(os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0"))
    except ValueError:
        return 0


def shown(line: str, min_level: int) -> bool:
    """Whether a stderr line passes: absl log lines and absl's preamble (a warning) pass at or
    above ``min_level``; any other line always does."""
    if line.startswith(_ABSL_PREAMBLE):
        return _SEVERITY["W"] >= min_level
    match = _LOG_LINE.match(line)
    return match is None or _SEVERITY[match.group(1)] >= min_level


@contextlib.contextmanager
def native_stderr_filtered(min_level: int):
    """Within the block, what anything in the process writes to file descriptor 2 goes to a
    temporary file; at its end the lines :func:`shown` passes go to ``sys.stderr``, in order."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            text = captured.read().decode(errors="replace")
            sys.stderr.write("".join(s for s in text.splitlines(True) if shown(s, min_level)))
            sys.stderr.flush()


class _FilteredLoader(importlib.abc.Loader):
    """Runs another loader's ``exec_module`` inside :func:`native_stderr_filtered`."""

    def __init__(self, loader: importlib.abc.Loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module) -> None:
        module.__loader__ = module.__spec__.loader = self.loader
        with native_stderr_filtered(min_log_level()):
            self.loader.exec_module(module)


class _TensorFlowImport(importlib.abc.MetaPathFinder):
    """Finds ``tensorflow`` as the other finders do, with its loader wrapped; once."""

    def find_spec(self, fullname: str, path, target=None):
        if fullname != "tensorflow":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        if spec is not None and spec.loader is not None:
            spec.loader = _FilteredLoader(spec.loader)
        return spec


def filter_tensorflow_import() -> None:
    """Make the first ``import tensorflow`` from now on (direct, or through Keras) pass its
    stderr through :func:`shown` at the ``TF_CPP_MIN_LOG_LEVEL`` of that moment. Does nothing
    when TensorFlow is already imported, when fd 2 is not ``sys.stderr`` (a test runner's
    captured stream), or when already set up."""
    if "tensorflow" in sys.modules or any(isinstance(f, _TensorFlowImport) for f in sys.meta_path):
        return
    try:
        if sys.stderr.fileno() != 2:
            return
    except (AttributeError, OSError, ValueError):
        return
    sys.meta_path.insert(0, _TensorFlowImport())
