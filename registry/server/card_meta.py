"""The YAML front matter of a model card (``README.md``), as the Hugging Face Hub reads it.

``push_to_hub`` writes a README.md with metadata between ``---`` lines, and the client asks
``/api/validate-yaml`` before it commits one. The registry reads three things from it: that it
parses, the fields whose shape the Hub's own clients rely on, and a ``version:`` that names the
version a commit makes (HF_PROTOCOL.md, "Mapping onto the registry").
"""

from __future__ import annotations

import re

import yaml

from adapterhub.errors import InvalidReferenceError
from adapterhub.registry.reference import check_version

FRONT_MATTER = re.compile(r"\A\ufeff?---[ \t]*\r?\n(.*?)(?:\r?\n)?^---[ \t]*$", re.DOTALL | re.MULTILINE)
MAX_CARD_CHARS = 1024 * 1024
STRING_LISTS = ("tags", "datasets", "language", "base_model")  # a string, or a list of strings


class CardError(ValueError):
    """Card metadata the registry refuses; the message names the field."""


def front_matter(text: str) -> dict:
    """The metadata block as a mapping (empty when the card has none)."""
    if len(text) > MAX_CARD_CHARS:
        raise CardError(f"the model card is {len(text)} characters; the limit is {MAX_CARD_CHARS}")
    m = FRONT_MATTER.match(text)
    if m is None:
        return {}
    try:
        # safe_load builds only plain data (no Python objects); an alias bomb is bounded by the size cap
        meta = yaml.safe_load(m.group(1))
    except yaml.YAMLError as exc:
        raise CardError(f"the card metadata is not valid YAML: {str(exc).splitlines()[0]}") from None
    if meta is None:
        return {}
    if not isinstance(meta, dict):
        raise CardError(f"the card metadata must be a mapping of fields, not {type(meta).__name__}")
    return meta


def card_problems(meta: dict) -> list[str]:
    """What is wrong with the fields clients read, one sentence each."""
    problems = []
    for key in STRING_LISTS:
        value = meta.get(key)
        if value is not None and not (isinstance(value, str) or (
                isinstance(value, list) and all(isinstance(v, str) for v in value))):
            problems.append(f'"{key}" must be a string or a list of strings, got {value!r}'[:300])
    for key in ("license", "library_name", "pipeline_tag"):
        value = meta.get(key)
        if value is not None and not isinstance(value, str):
            problems.append(f'"{key}" must be a string, got {value!r}'[:300])
    if meta.get("version") is not None:
        try:
            check_version(str(meta["version"]))
        except InvalidReferenceError as exc:
            problems.append(f'"version": {exc}')
    return problems


def card_version(text: str) -> str | None:
    """The version a card's metadata names, if any (already checked by `card_problems`)."""
    value = front_matter(text).get("version")
    return None if value is None else str(value)
