"""Labelled text for training and evaluation: JSONL/CSV files (and, later, built-in datasets by name).

A file holds one example per line/row: ``text`` and ``label`` for classification, ``text`` for
language modelling. Every dataset carries the sha256 of its exact examples written as canonical
JSON lines, so a result can name precisely what it was measured on, whatever the file format.

>>> ds = load_dataset("reviews.jsonl")                  # doctest: +SKIP
>>> ds.task, len(ds), ds.labels, ds.sha256[:12]         # doctest: +SKIP
('classification', 200, ['bad', 'good'], '3f1c0a9e2b7d')
"""

from __future__ import annotations

import csv
import hashlib
import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from adapterhub.compose.workflows import builtin_data
from adapterhub.errors import AdapterHubError
from adapterhub.vocab import CLASSIFICATION, LM, TASKS


class DatasetError(AdapterHubError, ValueError):
    """A data file that cannot be used: missing, unreadable, malformed, or lacking a column."""


@dataclass(frozen=True)
class Example:
    text: str
    label: str | None = None

    def canonical(self) -> str:
        row = {"text": self.text} if self.label is None else {"label": self.label, "text": self.text}
        return json.dumps(row, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


@dataclass(frozen=True)
class Dataset:
    """Examples in file order, their task, label names (sorted) and the sha256 of the examples."""

    name: str
    task: str
    examples: tuple[Example, ...]
    sha256: str
    labels: tuple[str, ...] | None = None

    def __len__(self) -> int:
        return len(self.examples)

    @property
    def texts(self) -> list[str]:
        return [e.text for e in self.examples]


def examples_sha256(examples) -> str:
    """sha256 of the examples as canonical JSON lines (sorted keys, no spaces, UTF-8, '\\n' after each)."""
    h = hashlib.sha256()
    for e in examples:
        h.update(e.canonical().encode("utf-8") + b"\n")
    return h.hexdigest()


def sort_labels(labels) -> tuple[str, ...]:
    """Label names in a stable order: numerically when all are integers ("2" before "10"), else by text."""
    labels = set(labels)
    if labels and all(_is_int(x) for x in labels):
        return tuple(sorted(labels, key=int))
    return tuple(sorted(labels))


def _is_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


# ---------------------------------------------------------------------- file readers
def _read_jsonl(path: Path) -> list[tuple[int, dict]]:
    rows = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DatasetError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise DatasetError(f"{path}:{lineno}: expected a JSON object, found {type(row).__name__}")
            rows.append((lineno, row))
    return rows


def _read_csv(path: Path) -> list[tuple[int, dict]]:
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames:
            raise DatasetError(f"{path}: empty CSV file (expected a header row such as 'text,label')")
        rows = []
        for row in reader:
            if None in row:
                raise DatasetError(f"{path}:{reader.line_num}: more fields than the header has")
            rows.append((reader.line_num, {k: v for k, v in row.items() if v is not None}))
    return rows


READERS: dict[str, Callable[[Path], list[tuple[int, dict]]]] = {
    ".jsonl": _read_jsonl,
    ".ndjson": _read_jsonl,
    ".csv": _read_csv,
}

# built-in datasets: "name:split" -> a function returning (rows, task), read from installed packages
BUILTIN: dict[str, Callable[[], tuple[list[dict], str]]] = dict(builtin_data.BUILTIN)


# ---------------------------------------------------------------------- loading
def load_dataset(source: str | Path, task: str | None = None) -> Dataset:
    """Read a JSONL/CSV file (or a built-in ``name:split``); ``task`` defaults to classification
    when the first example has a label, else language modelling."""
    if task is not None and task not in TASKS:
        raise DatasetError(f"unknown task {task!r}; use one of {', '.join(TASKS)}")
    if isinstance(source, str) and source in BUILTIN:
        raw, builtin_task = BUILTIN[source]()
        rows = [(i + 1, row) for i, row in enumerate(raw)]
        return _build(source, rows, task or builtin_task)
    path = Path(source)
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        known = ", ".join(sorted(READERS)) + (f"; built-in: {', '.join(sorted(BUILTIN))}" if BUILTIN else "")
        raise DatasetError(f"{path}: unknown data format {path.suffix or '(no suffix)'!r}; use {known}")
    if not path.is_file():
        raise DatasetError(f"{path}: no such data file")
    try:
        rows = reader(path)
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    if not rows:
        raise DatasetError(f"{path}: no examples")
    if task is None:
        task = CLASSIFICATION.name if rows[0][1].get("label") not in (None, "") else LM.name
    return _build(str(path), rows, task)


def _build(name: str, rows: list[tuple[int, dict]], task: str) -> Dataset:
    examples = []
    for lineno, row in rows:
        where = f"{name}:{lineno}"
        text = row.get("text")
        if not isinstance(text, str) or not text:
            raise DatasetError(f"{where}: missing or empty 'text' column (found columns: {', '.join(row) or 'none'})")
        if task == LM.name:
            examples.append(Example(text))
            continue
        label = row.get("label")
        if label is None or label == "" or isinstance(label, (dict, list)):
            raise DatasetError(f"{where}: missing 'label' column, which classification needs (found: {', '.join(row)})")
        examples.append(Example(text, str(label) if not isinstance(label, bool) else str(label).lower()))
    labels = sort_labels(e.label for e in examples) if task == CLASSIFICATION.name else None
    return Dataset(name, task, tuple(examples), examples_sha256(examples), labels)


def load_examples(rows: list[dict], task: str | None = None, name: str = "<memory>") -> Dataset:
    """A dataset from in-memory rows (``{"text": ..., "label": ...}``), checked like a file."""
    if not rows:
        raise DatasetError(f"{name}: no examples")
    if task is None:
        task = CLASSIFICATION.name if rows[0].get("label") not in (None, "") else LM.name
    return _build(name, [(i + 1, r) for i, r in enumerate(rows)], task)


def seeded_sample(dataset: Dataset, n: int, seed: int = 0) -> Dataset:
    """A fixed seeded sample of ``n`` examples kept in the dataset's order, so a test split too large to
    score often is still scored on the same, reproducible examples (their sha256 identifies them)."""
    if len(dataset) <= n:
        return dataset
    keep = sorted(random.Random(seed).sample(range(len(dataset)), n))
    rows = [{"text": dataset.examples[i].text,
             **({"label": dataset.examples[i].label} if dataset.task == CLASSIFICATION.name else {})} for i in keep]
    return load_examples(rows, dataset.task, name=f"{dataset.name} (seeded sample of {n})")


__all__ = ["BUILTIN", "READERS", "Dataset", "DatasetError", "Example", "load_dataset",
           "load_examples", "examples_sha256", "seeded_sample"]
