"""``yolo data convert``: a dataset written in another format, its images hard-linked."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from yolo_cli.config import DATASET_FORMATS
from yolo_cli.data.dataset import Dataset
from yolo_cli.data.load import READERS, build, read_source, split_arg
from yolo_cli.errors import YoloError
from yolo_cli.fileio import atomic_path, check_writable


def unique_ids(images: Sequence[Path]) -> dict[Path, str]:
    """A file stem per image path, unique among them: a stem that several images share gets
    its folder's name prefixed (``train_0001``), then a counter if still taken."""
    counts = Counter(p.stem for p in set(images))
    ids: dict[Path, str] = {}
    used: set[str] = set()
    for p in images:
        if p in ids:
            continue
        base = p.stem if counts[p.stem] == 1 else f"{p.parent.name}_{p.stem}"
        name, k = base, 1
        while name in used:
            k += 1
            name = f"{base}_{k}"
        used.add(name)
        ids[p] = name
    return ids


def _check_destination(dst: Path, sources: list[Path]) -> None:
    """Refuse a ``dst`` inside any source folder, or one that already holds files (which
    also covers a ``dst`` above the sources)."""
    d = dst.resolve()
    for src in sources:
        s = src.resolve()
        if d == s or s in d.parents:
            raise YoloError(f"{dst}: inside the source dataset {src}; pick another folder")
    if dst.exists() and (not dst.is_dir() or any(dst.iterdir())):
        raise YoloError(f"{dst}: already exists and is not an empty folder")
    check_writable(dst, folder=True)


def convert_dataset(
    src: str | Path,
    dst: str | Path,
    to: str,
    split: str | None = None,
) -> dict[str, Dataset]:
    """Write the dataset at ``src`` into the empty or new folder ``dst`` in format ``to``.

    Writes ``split``, or every split when None or ``all`` (train, val, test: the dataset's
    own, else the seeded shares); images are
    hard-linked (copied across file systems), never written into ``src``. Bad samples are
    skipped and reported as when loading. ``dst`` appears only once complete (written beside
    it, then renamed). Returns the datasets written, by split; they share one
    :class:`~yolo_cli.data.dataset.Problems`.
    """
    if to not in DATASET_FORMATS:
        raise YoloError(f"unknown format {to!r} (choose from {', '.join(DATASET_FORMATS)})")
    split = split_arg(split)
    dst = Path(dst)
    source = read_source(src)
    folders = {a.image.parent for records in source.parts.values() for a in records}
    given = Path(src) if Path(src).is_dir() else Path(src).parent
    root = source.root if source.root.is_dir() else source.root.parent
    _check_destination(dst, [given, root, *sorted(folders)])
    written = {}
    for s in [split] if split else source.splits():
        dataset = build(source, s)
        if dataset.samples:
            written[s] = dataset
    if not written:
        raise YoloError(f"{src}: no usable images to convert ({source.problems.summary()})")
    samples = {s: d.samples for s, d in written.items()}
    ids = unique_ids([x.image for part in samples.values() for x in part])
    with atomic_path(dst) as folder:
        READERS[to].write(folder, source.names, samples, ids)
    return written
