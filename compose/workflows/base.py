"""The one way to load a frozen base model: a local transformers folder, a catalogue name or Hub id.

Training, evaluation, the UI and serving all load bases here, so they agree on what a folder is,
which head it gets, and how the task is told when the caller does not say: a folder saved as a
sequence classifier is one, anything else is a causal LM.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from adapterhub.compose.workflows.data import DatasetError
from adapterhub.errors import AdapterHubError
from adapterhub.vocab import CLASSIFICATION, LM


@contextlib.contextmanager
def quiet_transformers():
    """Silence transformers' load-time chatter (e.g. 'newly initialised head') for the block."""
    from transformers.utils import logging as hf_logging

    level, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


def base_folder(name_or_path: str | Path) -> Path:
    """A local transformers folder, or a catalogue name or Hub id (``minilm-l6``,
    ``HuggingFaceTB/SmolLM2-135M-Instruct``, as an adapter folder's ``base_model_name_or_path``
    records it) resolved to the catalogue's local folder: never a download."""
    from adapterhub.compose.workflows.catalog import CATALOGUE, catalogue_entry, resolve_base_model

    if not Path(name_or_path).is_dir():
        entry = catalogue_entry(str(name_or_path))
        if entry is not None:
            return resolve_base_model(entry.name, say=lambda m: print(m, file=sys.stderr))
    folder = Path(name_or_path)
    if not (folder / "config.json").is_file():
        names = ", ".join(n for e in CATALOGUE.values() for n in (e.name, e.hub_id))
        raise AdapterHubError(
            f"{folder}: not a local transformers model folder (no config.json) nor a catalogue name or id ({names})"
        )
    return folder


def saved_task(folder: Path) -> str:
    """The task a base folder was saved for, read from its ``architectures``."""
    try:
        archs = json.loads((folder / "config.json").read_text()).get("architectures") or []
    except (OSError, ValueError, AttributeError) as exc:
        raise AdapterHubError(f"{folder}/config.json: not a readable transformers config ({exc})") from exc
    return CLASSIFICATION.name if any("SequenceClassification" in str(a) for a in archs) else LM.name


def load_tokenizer(name_or_path: str | Path):
    """The base folder's tokenizer, with a pad token (the EOS token where the tokenizer has none)."""
    from transformers import AutoTokenizer

    with quiet_transformers():
        tok = AutoTokenizer.from_pretrained(str(base_folder(name_or_path)), local_files_only=True)
    if tok.pad_token is None:
        if tok.eos_token is None:
            raise AdapterHubError(f"{name_or_path}: the tokenizer has neither a pad nor an EOS token to pad batches with")
        tok.pad_token = tok.eos_token
    return tok


def load_base(name_or_path: str | Path, task: str | None = None, labels: Sequence[str] | None = None,
              seed: int = 0, tokenizer=None):
    """The frozen base, in eval mode: a sequence classifier or a causal LM.

    ``task`` None keeps what the folder was saved as (its own head and labels). For
    ``"classification"`` with ``labels``, a head the folder lacks (or has with another width) is
    initialised from ``seed``; an adapter trained with ``task_type="SEQ_CLS"`` carries its own
    trained copy of it.
    """
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    folder = base_folder(name_or_path)
    task = task or saved_task(folder)
    torch.manual_seed(seed)
    with quiet_transformers():
        if task == CLASSIFICATION.name and labels is not None:
            if len(labels) < 2:
                raise DatasetError(f"classification needs at least two labels, found {list(labels)}")
            model = AutoModelForSequenceClassification.from_pretrained(
                str(folder), num_labels=len(labels), id2label=dict(enumerate(labels)),
                label2id={label: i for i, label in enumerate(labels)}, ignore_mismatched_sizes=True,
                local_files_only=True, dtype=torch.float32,
            )
        elif task == CLASSIFICATION.name:
            model = AutoModelForSequenceClassification.from_pretrained(
                str(folder), local_files_only=True, dtype=torch.float32)
        else:
            model = AutoModelForCausalLM.from_pretrained(str(folder), local_files_only=True, dtype=torch.float32)
    if tokenizer is not None and model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    return model.eval()
