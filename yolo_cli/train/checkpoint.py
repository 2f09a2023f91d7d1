"""The checkpoint: ``last.keras`` holds the weights, the optimizer state and the run state
(:class:`RunState`: epoch, step, planned epochs, best score, history) as one file.

The run state is one more entry (``yolo_cli_run.json``) in the model archive, beside the
metadata, and the archive is written to a temporary file and renamed over ``last.keras`` only
when complete. So what a resume reads can never disagree: a process killed at any moment leaves
either the previous checkpoint whole or the new one whole.

``best.keras`` is written before ``last.keras`` at the end of an epoch: a process killed between
the two leaves a state that trains the epoch again, and its deterministic rerun writes the same
``best.keras`` again.
"""

from __future__ import annotations

import json
import math
import os
import re
import zipfile
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from yolo_cli.errors import YoloError
from yolo_cli.fileio import atomic_path
from yolo_cli.modelfile import ModelMeta, read_meta, save_model

CHECKPOINT = "last.keras"
BEST = "best.keras"
STATE_NAME = "yolo_cli_run.json"
_STATE_VERSION = 1
_TMP = re.compile(r"^\..*\.(\d+)\.tmp")  # fileio.atomic_path's temporary names, with the pid


@dataclass
class RunState:
    """Where a run is.

    config: the :class:`~yolo_cli.train.TrainConfig` fields it runs with. epochs: the planned
    epoch count (the learning-rate schedule's length; ``--minutes`` re-plans it). epochs_done:
    whole epochs trained and validated. step: training steps done in the next epoch (0 at an
    epoch boundary; the epoch's step count when only its validation is left). sums: the
    epoch's loss sums over those steps (its mean in the history counts every step once).
    best_map50 / best_epoch: the val mAP@0.5 of the epoch of best fitness and that epoch
    (``None`` / 0 before any; :func:`yolo_cli.train.recipe.fitness`).
    history: one row per epoch (``history.csv``). seconds: training time over every session.
    dropped_boxes: ``[dropped, total]`` training boxes the target encoding drops.
    """

    config: dict
    epochs: int
    epochs_done: int = 0
    step: int = 0
    sums: dict = field(default_factory=dict)
    best_map50: float | None = None
    best_epoch: int = 0
    history: list = field(default_factory=list)
    seconds: float = 0.0
    dropped_boxes: list = field(default_factory=lambda: [0, 0])
    version: int = _STATE_VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str | bytes, where) -> RunState:
        """Parse and check the types; raises :class:`YoloError` naming ``where``."""
        try:
            raw = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
            raise YoloError(f"{where}: corrupt run state ({e})") from None
        if not isinstance(raw, dict):
            raise YoloError(f"{where}: corrupt run state (not a JSON object)")
        if raw.get("version") != _STATE_VERSION:
            raise YoloError(f"{where}: run state version {raw.get('version')!r} is not supported")
        names = {f.name for f in fields(cls)}
        if set(raw) != names:
            raise YoloError(f"{where}: corrupt run state (fields {sorted(set(raw) ^ names)})")
        state = cls(**raw)
        problem = state._problem()
        if problem:
            raise YoloError(f"{where}: corrupt run state ({problem})")
        return state

    def _problem(self) -> str | None:
        def count(x) -> bool:
            return isinstance(x, int) and not isinstance(x, bool) and x >= 0

        def number(x) -> bool:
            return isinstance(x, int | float) and not isinstance(x, bool) and not math.isinf(x)

        if not isinstance(self.config, dict):
            return "config is not an object"
        if not all(count(x) for x in (self.epochs, self.epochs_done, self.step, self.best_epoch)):
            return "epochs, epochs_done, step and best_epoch must be whole numbers ≥ 0"
        if self.epochs_done > self.epochs or self.best_epoch > self.epochs_done:
            return f"epochs_done {self.epochs_done} of {self.epochs}, best epoch {self.best_epoch}"
        if not isinstance(self.sums, dict) or not all(number(v) for v in self.sums.values()):
            return "sums must map names to numbers"
        if self.best_map50 is not None and not (
            number(self.best_map50) and 0 <= self.best_map50 <= 1
        ):
            return "best_map50 must be a mAP in 0..1 or null"
        if not isinstance(self.history, list) or len(self.history) != self.epochs_done:
            return f"history must hold one row per epoch done ({self.epochs_done})"
        if not all(isinstance(r, dict) for r in self.history):
            return "history rows must be objects"
        if not number(self.seconds) or self.seconds < 0:
            return "seconds must be a number ≥ 0"
        if not (isinstance(self.dropped_boxes, list) and len(self.dropped_boxes) == 2):
            return "dropped_boxes must be [dropped, total]"
        return None


def write_checkpoint(path: Path, model, meta: ModelMeta, state: RunState) -> None:
    """Write the model (with its optimizer state), ``meta`` and ``state`` to ``path`` as one
    archive, atomically."""
    with atomic_path(path, suffix=".keras") as tmp:
        save_model(model, tmp, meta)
        with zipfile.ZipFile(tmp, "a") as archive:
            archive.writestr(STATE_NAME, state.to_json())


def read_checkpoint(run_dir: Path) -> tuple[Path, ModelMeta, RunState]:
    """The checkpoint of the run in ``run_dir``: its path, metadata and run state (no
    TensorFlow needed). Raises :class:`YoloError` with one line for a folder without one, a
    truncated or corrupt archive, or a malformed run state."""
    path = run_dir / CHECKPOINT
    if not run_dir.is_dir():
        raise YoloError(f"{run_dir}: no such run folder")
    if not path.is_file():
        raise YoloError(f"{run_dir}: not a resumable run (no {CHECKPOINT})")
    meta = read_meta(path)
    try:
        with zipfile.ZipFile(path) as archive:
            if STATE_NAME not in archive.namelist():
                raise YoloError(
                    f"{path}: holds no run state (written by an older yolo-cli?); "
                    f"start a new run from it with --weights {path}"
                )
            text = archive.read(STATE_NAME)
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise YoloError(f"{path}: not a Keras model archive ({e})") from None
    return path, meta, RunState.from_json(text, path)


def remove_stale_temporaries(run_dir: Path) -> list[Path]:
    """Delete the temporary files that killed processes left in ``run_dir`` (a write cut
    short); those of live processes stay. Returns the files removed."""
    removed = []
    for p in run_dir.iterdir():
        m = _TMP.match(p.name)
        if m and p.is_file() and not _alive(int(m.group(1))):
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
