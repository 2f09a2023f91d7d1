"""Run folders: ``runs/<task>/exp``, ``exp2``, … as ultralytics users know them."""

from __future__ import annotations

from pathlib import Path


def next_run_dir(base: str | Path) -> Path:
    """``base/exp``, then ``base/exp2``, ``base/exp3`` … (the first that does not exist)."""
    base = Path(base)
    candidate, n = base / "exp", 1
    while candidate.exists():
        n += 1
        candidate = base / f"exp{n}"
    return candidate
