"""Scoring a model on a dataset whose class list differs: which model class is which dataset class.

``yolo eval --data D --model M`` scores M on the classes M and D share. A model class and a
dataset class are the same class when, in this order (each class is matched once):

1. ``--class-map MODEL=DATASET,…`` says so (several model classes may feed one dataset
   class, e.g. ``truck=car,bus=car``);
2. their names are equal;
3. their names are equal ignoring case, spaces, ``_`` and ``-`` (``Dining Table`` =
   ``diningtable``);
4. their names are synonyms in :data:`yolo_cli.config.CLASS_SYNONYMS` (``person`` =
   ``pedestrian``, ``motorcycle`` = ``motorbike``, …).

Detections of model classes with no dataset class are dropped; dataset classes with no model
class are left out of the scores (and the mean).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from yolo_cli.config import CLASS_SYNONYMS
from yolo_cli.errors import YoloError
from yolo_cli.postprocess import Detections

# how a pair was matched, as the report says it
BY_MAP, BY_NAME, BY_SPELLING, BY_SYNONYM = "--class-map", "same name", "spelling", "synonym"


def parse_class_map(text: str | None) -> list[tuple[str, str]]:
    """``--class-map`` text ``MODEL=DATASET,MODEL=DATASET`` → ``[(model, dataset), …]``.

    Raises :class:`YoloError` for a pair without ``=`` or with an empty side.
    """
    pairs = []
    for item in (text or "").split(","):
        if not item.strip():
            continue
        model, sep, dataset = item.partition("=")
        if not sep or not model.strip() or not dataset.strip():
            raise YoloError(f"--class-map: expected MODEL=DATASET pairs, got {item.strip()!r}")
        pairs.append((model.strip(), dataset.strip()))
    return pairs


def _key(name: str) -> str:
    """A name without case, spaces, ``_`` and ``-``: ``Dining_Table`` → ``diningtable``."""
    return re.sub(r"[\s_\-]+", "", name.lower())


_SYNONYM_GROUP = {_key(n): g for g, group in enumerate(CLASS_SYNONYMS) for n in group}


@dataclass
class ClassMatch:
    """Model classes matched to dataset classes.

    pairs: ``(model class, dataset class, how)`` by dataset class order; ``scored``: the
    dataset classes scored, ascending (index into ``dataset_names``).
    """

    model_names: list[str]
    dataset_names: list[str]
    pairs: list[tuple[int, int, str]]

    @property
    def identical(self) -> bool:
        """The model names exactly the dataset's classes, in the same order."""
        return self.model_names == self.dataset_names

    @property
    def scored(self) -> list[int]:
        return sorted({d for _, d, _ in self.pairs})

    @property
    def scored_names(self) -> list[str]:
        return [self.dataset_names[d] for d in self.scored]

    @property
    def unscored(self) -> list[str]:
        """Dataset classes no model class matched, in dataset order."""
        scored = set(self.scored)
        return [n for d, n in enumerate(self.dataset_names) if d not in scored]

    @property
    def dropped(self) -> list[str]:
        """Model classes matched to no dataset class, in model order."""
        used = {m for m, _, _ in self.pairs}
        return [n for m, n in enumerate(self.model_names) if m not in used]

    def detections(self, dets: Detections) -> Detections:
        """A model's detections → detections of the scored classes, ``classes`` indexing
        :attr:`scored`; detections of unmatched model classes are dropped."""
        to_scored = np.full(len(self.model_names), -1, np.int32)
        position = {d: i for i, d in enumerate(self.scored)}
        for m, d, _ in self.pairs:
            to_scored[m] = position[d]
        classes = to_scored[np.asarray(dets.classes, np.int64)]
        kept = classes >= 0
        return Detections(dets.boxes[kept], dets.scores[kept], classes[kept])

    def ground_truth(self, boxes: np.ndarray, classes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One image's ground truth (``(N, 4)``, ``(N,)`` dataset classes) → that of the
        scored classes, classes indexing :attr:`scored`."""
        to_scored = np.full(len(self.dataset_names), -1, np.int32)
        to_scored[self.scored] = np.arange(len(self.scored), dtype=np.int32)
        mapped = to_scored[np.asarray(classes, np.int64)]
        kept = mapped >= 0
        return np.asarray(boxes)[kept], mapped[kept]

    def lines(self) -> list[str]:
        """The report: which classes were scored and how, which were not. Empty when the
        model names exactly the dataset's classes."""
        if self.identical:
            return []
        by_dataset: dict[int, list[tuple[int, str]]] = {}
        for m, d, how in self.pairs:
            by_dataset.setdefault(d, []).append((m, how))
        shown = []
        for d in self.scored:
            name = self.dataset_names[d]
            sources = [
                name if self.model_names[m] == name else f"{self.model_names[m]} ({how})"
                for m, how in by_dataset[d]
            ]
            shown.append(name if sources == [name] else f"{name} ← {' + '.join(sources)}")
        n_data = len(self.dataset_names)
        lines = [f"scored {len(self.scored)} of {n_data} dataset classes: {', '.join(shown)}"]
        if self.unscored:
            lines.append(f"not scored (no model class): {', '.join(self.unscored)}")
        if self.dropped:
            listed = ", ".join(self.dropped[:8]) + (", …" if len(self.dropped) > 8 else "")
            lines.append(f"model classes dropped (no dataset class): {len(self.dropped)}: {listed}")
        return lines

    def to_dict(self) -> dict:
        """JSON-ready: per scored dataset class the model classes and how; the rest."""
        return {
            "scored": [
                {
                    "dataset": self.dataset_names[d],
                    "model": [self.model_names[m] for m, dd, _ in self.pairs if dd == d],
                    "how": sorted({how for _, dd, how in self.pairs if dd == d}),
                }
                for d in self.scored
            ],
            "not_scored": self.unscored,
            "model_classes_dropped": self.dropped,
        }


def match_classes(
    model_names: Sequence[str],
    dataset_names: Sequence[str],
    class_map: Sequence[tuple[str, str]] = (),
    model: str = "model",
) -> ClassMatch:
    """Match ``model_names`` to ``dataset_names`` (module doc). ``class_map``: ``(model,
    dataset)`` name pairs, matched ignoring case; ``model`` names the model in errors.

    Raises :class:`YoloError` for a ``class_map`` name that is not a class of its side, a model
    class mapped twice, and when no class is shared.
    """
    model_names, dataset_names = list(model_names), list(dataset_names)
    pairs: list[tuple[int, int, str]] = []
    model_of = _lookup(model_names)
    dataset_of = _lookup(dataset_names)
    for m_name, d_name in class_map:
        m = model_of(m_name)
        d = dataset_of(d_name)
        if m is None:
            raise YoloError(
                f"--class-map: {m_name!r} is not a class of {model} ({_list(model_names)})"
            )
        if d is None:
            raise YoloError(
                f"--class-map: {d_name!r} is not a class of the dataset ({_list(dataset_names)})"
            )
        if any(pm == m for pm, _, _ in pairs):
            raise YoloError(f"--class-map: {m_name!r} is mapped twice")
        pairs.append((m, d, BY_MAP))
    for how, key in (
        (BY_NAME, lambda n: n),
        (BY_SPELLING, _key),
        (BY_SYNONYM, lambda n: _SYNONYM_GROUP.get(_key(n))),
    ):
        used_m = {m for m, _, _ in pairs}
        used_d = {d for _, d, _ in pairs}
        free = {}
        for d, name in enumerate(dataset_names):
            k = key(name)
            if d not in used_d and k is not None:
                free.setdefault(k, d)
        for m, name in enumerate(model_names):
            k = key(name)
            if m not in used_m and k is not None and k in free:
                pairs.append((m, free.pop(k), how))
    if not pairs:
        raise YoloError(
            f"{model}: its classes ({_list(model_names)}) share none with the dataset's "
            f"({_list(dataset_names)}); say which are the same with --class-map MODEL=DATASET,…"
        )
    pairs.sort(key=lambda p: (p[1], p[0]))
    return ClassMatch(model_names, dataset_names, pairs)


def _lookup(names: list[str]):
    exact = {n: i for i, n in reversed(list(enumerate(names)))}
    loose = {_key(n): i for i, n in reversed(list(enumerate(names)))}
    return lambda name: exact.get(name, loose.get(_key(name)))


def _list(names: list[str], n: int = 12) -> str:
    return ", ".join(names[:n]) + (f", … ({len(names)} in all)" if len(names) > n else "")
