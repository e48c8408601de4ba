"""How an evaluation was run, written beside every score so that anyone can run it again.

A metric without its protocol is a number nobody can check: the same adapter on the same data gave
other figures at another ``max_length``, on the full split instead of the card's seeded sample, or
scored as a perplexity instead of as a constrained answer. A protocol names everything that decides
the figures (the task and scoring rule, the data and the sha256 of the examples as read, the label
order, lengths, truncation and padding, a generation template and its answer choices, batch size,
seed) and the software that produced them. The engine writes one with every result, the registry
stores it on the evaluation, the card carries the one its figures were scored with, and the card's
``model-index`` is built from it.

This module is shared words (the standard library only): the server validates and stores protocols,
the CLI and the UI show them, the engine fills and follows them.

>>> p = EvalProtocol(task="classification", scoring=ARGMAX_HEAD, data=DataRef("bbc-news:test"), max_length=128)
>>> print(p.describe())
classification by the head's argmax on bbc-news:test, max_length 128, truncation right, padding right, batch 16
>>> EvalProtocol.from_dict(p.to_dict()) == p
True
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from adapterhub.errors import AdapterHubError

PROTOCOL_VERSION = 1

# the scoring rules: how a model's outputs become the figures
ARGMAX_HEAD = "argmax-head"  # a classifier's logits; the prediction is the argmax
CONSTRAINED_ANSWER = "constrained-answer"  # a causal LM; each answer choice scored by its tokens' summed log-prob
TOKEN_NLL = "token-nll"  # a causal LM's perplexity over the text's tokens
SCORINGS: dict[str, str] = {
    ARGMAX_HEAD: "the classification head's argmax",
    CONSTRAINED_ANSWER: "the most likely allowed answer (summed log-probability of its tokens after the prompt)",
    TOKEN_NLL: "next-token negative log-likelihood, token-weighted",
}
# which tokens each rule scores, said in words in every protocol (an outsider needs it to match the number)
SCORED_TOKENS: dict[str, str] = {
    ARGMAX_HEAD: "none (one prediction per example)",
    CONSTRAINED_ANSWER: "the answer's tokens only, each predicted from the prompt and the answer tokens before it",
    TOKEN_NLL: "every real token after the first of each text (the first has nothing before it to predict it; "
               "virtual tokens and padding are never scored)",
}
TRUNCATION_SIDES = ("right", "left")
PADDING_SIDES = ("right", "left")
DEFAULT_BATCH_SIZE = 16
DEFAULT_MAX_LENGTH = 256  # only for an adapter whose card names none

# the fields a user may set on the command line; a value that differs from the card's is an override
OVERRIDABLE = ("data", "sample", "sample_seed", "max_length", "batch_size", "scoring", "base")

_SAMPLE = re.compile(r"seeded sample of (\d+)")


class ProtocolError(AdapterHubError, ValueError):
    """A protocol that cannot be followed: an unknown scoring rule, a bad length, a missing template."""


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class DataRef:
    """The examples scored: a built-in ``name:split`` or a file, optionally a seeded sample of it."""

    ref: str
    sample: int | None = None  # score ``sample`` examples drawn with ``sample_seed``, kept in file order
    sample_seed: int = 0
    sha256: str | None = None  # of the examples as read (after sampling): the data's identity
    examples: int | None = None

    def label(self) -> str:
        return self.ref if not self.sample else f"{self.ref} (seeded sample of {self.sample}, seed {self.sample_seed})"


@dataclass(frozen=True)
class Template:
    """A generation prompt: ``text`` with ``{choices}`` and ``{text}``; the example is cut to ``max_chars``."""

    text: str
    max_chars: int | None = None
    chat_template: bool = False  # whether the tokenizer's chat template wraps the prompt
    answer_prefix: str = " "  # what joins the prompt and an answer choice

    @property
    def sha256(self) -> str:
        return text_sha256(self.text)

    def render(self, text: str, choices: list[str]) -> str:
        cut = text[: self.max_chars] if self.max_chars else text
        return self.text.format(choices=", ".join(choices), text=cut.strip())

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "sha256": self.sha256}


@dataclass(frozen=True)
class EvalProtocol:
    """Everything that decides an evaluation's figures (see the module docstring)."""

    task: str  # adapterhub.vocab task name: classification or lm
    scoring: str
    data: DataRef
    labels: tuple[str, ...] | None = None  # in the order the confusion matrix's rows and columns follow
    max_length: int = DEFAULT_MAX_LENGTH
    truncation: str = "right"
    padding_side: str = "right"
    batch_size: int = DEFAULT_BATCH_SIZE
    seed: int = 0
    template: Template | None = None
    base: str | None = None  # the base model's Hub id (or the path given)
    software: dict[str, str] = field(default_factory=dict)  # adapterhub, torch, transformers versions
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)  # field -> {"card": x, "used": y}

    def __post_init__(self) -> None:
        for name, value in (("task", self.task), ("data.ref", self.data.ref),
                            ("template.text", self.template.text if self.template else "")):
            if not isinstance(value, str):
                raise ProtocolError(f"protocol {name} must be a string, got {type(value).__name__}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise ProtocolError(f"protocol seed must be an integer, got {self.seed!r}")
        if self.scoring not in SCORINGS:
            raise ProtocolError(f"unknown scoring {self.scoring!r}; use one of {', '.join(SCORINGS)}")
        for name in ("max_length", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ProtocolError(f"protocol {name} must be a positive integer, got {value!r}")
        if self.data.sample is not None and (not isinstance(self.data.sample, int) or self.data.sample < 1):
            raise ProtocolError(f"protocol sample must be a positive integer, got {self.data.sample!r}")
        if self.truncation not in TRUNCATION_SIDES or self.padding_side not in PADDING_SIDES:
            raise ProtocolError(f"truncation and padding_side are one of {TRUNCATION_SIDES}, "
                                f"got {self.truncation!r} / {self.padding_side!r}")
        if self.scoring == CONSTRAINED_ANSWER and (self.template is None or not self.labels):
            raise ProtocolError("constrained-answer scoring needs a prompt template and the answer choices (labels)")

    @property
    def choices(self) -> list[str] | None:
        return list(self.labels) if self.scoring == CONSTRAINED_ANSWER and self.labels else None

    def describe(self) -> str:
        """One line a person reads next to the figures."""
        how = {ARGMAX_HEAD: "by the head's argmax", CONSTRAINED_ANSWER: "by constrained answer",
               TOKEN_NLL: "as perplexity"}[self.scoring]
        parts = [f"{self.task} {how} on {self.data.label()}", f"max_length {self.max_length}",
                 f"truncation {self.truncation}", f"padding {self.padding_side}", f"batch {self.batch_size}"]
        if self.template is not None:
            parts.append(f"template {self.template.sha256[:12]}")
        if self.overrides:
            parts.append("overrides " + ", ".join(sorted(self.overrides)))
        return ", ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"protocol_version": PROTOCOL_VERSION, "task": self.task, "scoring": self.scoring,
                               "scored_tokens": SCORED_TOKENS[self.scoring],
                               "data": {k: v for k, v in asdict(self.data).items() if v is not None},
                               "max_length": self.max_length, "truncation": self.truncation,
                               "padding_side": self.padding_side, "batch_size": self.batch_size, "seed": self.seed}
        if self.labels is not None:
            out["labels"] = list(self.labels)
        if self.template is not None:
            out["template"] = self.template.to_dict()
            out["choices"] = self.choices
        if self.base:
            out["base"] = self.base
        if self.software:
            out["software"] = dict(self.software)
        if self.overrides:
            out["overrides"] = {k: dict(v) for k, v in self.overrides.items()}
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EvalProtocol:
        """Read a stored protocol; a malformed one is a ``ProtocolError`` naming the field."""
        if not isinstance(data, dict):
            raise ProtocolError(f"a protocol is a JSON object, got {type(data).__name__}")
        try:
            raw_data = dict(data["data"])
            ref = DataRef(**{k: raw_data[k] for k in ("ref", "sample", "sample_seed", "sha256", "examples")
                             if k in raw_data})
            template = None
            if data.get("template"):
                t = data["template"]
                template = Template(**{f.name: t[f.name] for f in fields(Template) if f.name in t})
                if t.get("sha256") and t["sha256"] != template.sha256:
                    raise ProtocolError("protocol template: its text does not match its sha256")
            kwargs = {f.name: data[f.name] for f in fields(cls)
                      if f.name in data and f.name not in ("data", "template", "labels")}
            if data.get("labels") is not None and not isinstance(data["labels"], list):
                raise ProtocolError("protocol labels must be a list of label names")
            for name, kind in (("software", dict), ("overrides", dict)):
                if name in kwargs and not isinstance(kwargs[name], kind):
                    raise ProtocolError(f"protocol {name} must be a JSON object")
            labels = tuple(map(str, data["labels"])) if data.get("labels") is not None else None
            return cls(data=ref, template=template, labels=labels, **kwargs)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            if isinstance(exc, ProtocolError):
                raise
            raise ProtocolError(f"malformed protocol: {exc}") from None

    def with_overrides(self, **used: Any) -> EvalProtocol:
        """This protocol with some fields set otherwise (``None`` keeps the card's), each recorded."""
        changes: dict[str, Any] = {}
        overrides = dict(self.overrides)
        data = self.data
        for name, value in used.items():
            if name not in OVERRIDABLE:
                raise ProtocolError(f"{name!r} cannot be set; settable: {', '.join(OVERRIDABLE)}")
            if value is None:
                continue
            if name in ("data", "sample", "sample_seed"):
                current = {"data": data.ref, "sample": data.sample, "sample_seed": data.sample_seed}[name]
                if value != current:
                    data = replace(data, **{"ref" if name == "data" else name: value}, sha256=None, examples=None)
                    overrides[name] = {"card": current, "used": value}
                continue
            current = getattr(self, name)
            if value != current:
                changes[name] = value
                overrides[name] = {"card": current, "used": value}
        return replace(self, data=data, overrides=overrides, **changes)


def record_summary(evaluation: dict[str, Any]) -> tuple[str, str]:
    """How a stored evaluation was run and whether a re-run reproduced it, in words for a table cell:
    the two things that tell apart two evaluations of one version on one dataset."""
    raw = evaluation.get("protocol")
    try:
        how = EvalProtocol.from_dict(raw).describe() if raw else "no protocol recorded"
    except ProtocolError as exc:
        how = f"unreadable protocol ({exc})"
    check = evaluation.get("verification") or {}
    if not check:
        verdict = ""
    else:
        of = "the card" if check.get("of_card") else f"evaluation {check.get('of')}"
        verdict = f"re-ran {of}: " + ("reproduced" if check.get("reproduced") else
                                      "NOT reproduced" + (f" ({check['differences'][0]})" if check.get("differences") else ""))
    return how, verdict


def sample_size(described: str | int | None) -> int | None:
    """The sample size a legacy card spells as ``"seeded sample of 300"`` (``"all"``: None)."""
    if isinstance(described, int):
        return described
    match = _SAMPLE.search(str(described or ""))
    return int(match.group(1)) if match else None


def card_protocol(card: dict[str, Any]) -> EvalProtocol | None:
    """The protocol the card's figures were scored with, or None for a card that names no test data."""
    evaluation = card.get("evaluation") if isinstance(card.get("evaluation"), dict) else {}
    if isinstance(evaluation.get("protocol"), dict):
        return EvalProtocol.from_dict(evaluation["protocol"])
    return None


def card_results(card: dict[str, Any]) -> list[tuple[EvalProtocol, dict[str, Any]]]:
    """Every evaluation a card records with its protocol, headline first: ``(protocol, recorded)`` where
    ``recorded`` holds ``metrics``, ``confusion_matrix`` and ``data_sha256`` as ``same_figures`` reads them."""
    out: list[tuple[EvalProtocol, dict[str, Any]]] = []
    headline = card_protocol(card)
    if headline is not None:
        evaluation = card["evaluation"]
        out.append((headline, {"metrics": dict(card.get("metrics") or {}),
                               "confusion_matrix": evaluation.get("confusion_matrix"),
                               "data_sha256": headline.data.sha256}))
    for extra in card.get("evaluations") or []:
        if isinstance(extra, dict) and isinstance(extra.get("protocol"), dict):
            protocol = EvalProtocol.from_dict(extra["protocol"])
            out.append((protocol, {"metrics": dict(extra.get("metrics") or {}),
                                   "confusion_matrix": extra.get("confusion_matrix"),
                                   "data_sha256": protocol.data.sha256}))
    return out


def same_figures(recorded: dict[str, Any], fresh: dict[str, Any], scoring: str,
                 rel_tol: float = 1e-4) -> tuple[bool, list[str]]:
    """Whether a re-run reproduces a recorded result, and each difference in words.

    Classification reproduces when the confusion matrix is identical (every prediction the same
    class, not merely the same accuracy); a perplexity within ``rel_tol`` relative (floating-point
    sums over another machine's kernels differ in the last digits)."""
    diffs: list[str] = []
    if scoring == TOKEN_NLL:
        a, b = recorded.get("metrics", {}).get("perplexity"), fresh.get("metrics", {}).get("perplexity")
        if a is None or b is None:
            diffs.append("perplexity missing from " + ("the record" if a is None else "the re-run"))
        elif abs(a - b) > rel_tol * abs(a):
            diffs.append(f"perplexity {b:.6g} vs recorded {a:.6g} (relative {abs(a - b) / abs(a):.2e} > {rel_tol:g})")
    else:
        a, b = recorded.get("confusion_matrix"), fresh.get("confusion_matrix")
        if a is None:
            diffs.append("the record has no confusion matrix to compare")
        elif a != b:
            diffs.append(_matrix_difference(a, b))
    if recorded.get("data_sha256") and fresh.get("data_sha256") and recorded["data_sha256"] != fresh["data_sha256"]:
        diffs.append(f"the examples differ: sha256 {fresh['data_sha256'][:12]} vs recorded {recorded['data_sha256'][:12]}")
    return not diffs, diffs


def _matrix_difference(recorded: list[list[int]], fresh: list[list[int]] | None, shown: int = 12) -> str:
    """The cells that moved, (true, predicted): recorded -> re-run; short enough to store at any size."""
    if fresh is None or len(fresh) != len(recorded):
        return f"confusion matrix differs in shape: recorded {len(recorded)} classes, re-run {len(fresh or [])}"
    cells = [(t, p, x, y) for t, (ra, rb) in enumerate(zip(recorded, fresh, strict=True))
             for p, (x, y) in enumerate(zip(ra, rb, strict=True)) if x != y]
    moved = sum(abs(x - y) for *_, x, y in cells) // 2 or len(cells)
    listed = ", ".join(f"({t},{p}): {x} -> {y}" for t, p, x, y in cells[:shown])
    more = f", and {len(cells) - shown} more cells" if len(cells) > shown else ""
    return f"confusion matrix differs ({moved} predictions moved; cell (true, predicted): recorded -> re-run): {listed}{more}"


def model_index(name: str, card: dict[str, Any], results: list[tuple[EvalProtocol, dict[str, float]]],
                source: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """The Hugging Face Hub's ``model-index`` for a card's results (one entry per protocol)."""
    entries = []
    for protocol, metrics in results:
        dataset_name, _, split = protocol.data.ref.partition(":")
        dataset: dict[str, Any] = {"name": dataset_name, "type": dataset_name, "split": split or "test"}
        if protocol.data.sample:
            dataset["config"] = f"seeded-sample-{protocol.data.sample}-seed-{protocol.data.sample_seed}"
        if protocol.data.sha256:
            dataset["revision"] = protocol.data.sha256
        task_type = "text-generation" if protocol.scoring == TOKEN_NLL else "text-classification"
        entry: dict[str, Any] = {
            "task": {"type": task_type},
            "dataset": dataset,
            "metrics": [{"type": k, "value": round(float(v), 6), "name": k.replace("_", " ")}
                        for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)],
        }
        if source:
            entry["source"] = dict(source)
        entries.append(entry)
    return [{"name": name, "results": entries}] if entries else []


__all__ = [
    "ARGMAX_HEAD", "CONSTRAINED_ANSWER", "DEFAULT_BATCH_SIZE", "DEFAULT_MAX_LENGTH", "OVERRIDABLE",
    "PROTOCOL_VERSION", "SCORED_TOKENS", "SCORINGS", "TOKEN_NLL", "DataRef", "EvalProtocol", "ProtocolError",
    "Template", "card_protocol", "card_results", "record_summary", "model_index", "same_figures", "sample_size", "text_sha256",
]
