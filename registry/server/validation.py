"""Checks on what is published, made without loading tensors or unpickling anything.

>>> check_path("weights/adapter_model.safetensors")
'weights/adapter_model.safetensors'
>>> check_path("../etc/passwd")
Traceback (most recent call last):
ValidationError: bad path '../etc/passwd': '..' segments are not allowed
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable, Iterator

from adapterhub import adapters_folder as af
from adapterhub import format as folder_format
from adapterhub.format import (
    CONFIG_FILE,
    MAX_FILES_PER_VERSION,
    MAX_PATH_CHARS,
    PICKLE_SUFFIXES,
    FormatError,
    char_problem,
    file_set_problem,
    is_pickle_name,
    segment_problem,
)

PEFT_TYPE_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")
SHA256_RE = re.compile(r"[0-9a-f]{64}")


class ValidationError(ValueError):
    """A refused input; ``code`` is the API error code."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


def check_path(path: str) -> str:
    """A relative POSIX path every client can write as it is: no ``..``, empty segments,
    backslashes, drive letters or stream names, and no segment `format.segment_problem` refuses."""
    if not isinstance(path, str) or not path:
        raise ValidationError("BadPath", f"bad path {path!r}: empty")
    problem = char_problem(path)
    if problem:
        raise ValidationError("BadPath", f"bad path {path!r}: {problem}")
    if path.startswith("/") or re.match(r"[A-Za-z]:", path) or "\\" in path:
        raise ValidationError("BadPath", f"bad path {path!r}: must be relative, with '/' separators")
    parts = path.split("/")
    if any(p == ".." for p in parts):
        raise ValidationError("BadPath", f"bad path {path!r}: '..' segments are not allowed")
    if any(p in ("", ".") for p in parts) or len(path) > MAX_PATH_CHARS:
        raise ValidationError("BadPath", f"bad path {path!r}: empty or '.' segments are not allowed")
    for part in parts:
        problem = segment_problem(part)
        if problem:
            raise ValidationError("BadPath", f"bad path {path!r}: {problem}")
    return path


def check_not_pickle(path: str) -> None:
    """Refuse a pickle by its name, unopened; one of ``adapters``' pickles with the command that converts it."""
    if not is_pickle_name(path):
        return
    advice = af.pickle_advice(path)
    if advice:  # the command first: an HF client shows the first 500 characters
        raise ValidationError("PickleRefused", f"refused {path!r}: pickled weights can run code when loaded; {advice}")
    raise ValidationError(
        "PickleRefused",
        f"refused {path!r}: pickle-based weights ({', '.join(PICKLE_SUFFIXES)}) can run code; save them as safetensors",
    )


def check_file_set(paths: Iterable[str]) -> None:
    """Refuse a set of paths that no client could write out whole; the version would be immutable
    and unpullable. Each path must already have passed `check_path`, and none may repeat."""
    problem = file_set_problem(paths)
    if problem:
        raise ValidationError("BadPath", f"bad file set: {problem}")


def check_file_count(count: int) -> None:
    if count > MAX_FILES_PER_VERSION:
        raise ValidationError(
            "TooManyFiles", f"a version may hold at most {MAX_FILES_PER_VERSION} files, this one lists {count}"
        )


def check_adapter_config(cfg: dict) -> dict:
    """The fields every consumer of ``adapter_config.json`` relies on, checked without knowing the method.

    Any well-formed ``peft_type`` is accepted (PEFT adds methods faster than we do, and vLLM or
    PEFT may load ones our engine lacks); a rank is refused unless it is a positive integer,
    which every PEFT method with an ``r`` requires.
    """
    peft_type = cfg.get("peft_type")
    if peft_type is not None and not (isinstance(peft_type, str) and PEFT_TYPE_RE.fullmatch(peft_type)):
        raise ValidationError(
            "InvalidManifest", f"{CONFIG_FILE}: peft_type {peft_type!r} is not a method name such as 'LORA'"
        )
    r = cfg.get("r")
    if r is not None and (not isinstance(r, int) or isinstance(r, bool) or r <= 0):
        raise ValidationError("InvalidManifest", f"{CONFIG_FILE}: r must be a positive integer, got {r!r}")
    targets = cfg.get("target_modules")
    if targets is not None and not (isinstance(targets, str) or (
            isinstance(targets, list) and all(isinstance(t, str) for t in targets))):
        raise ValidationError(
            "InvalidManifest", f"{CONFIG_FILE}: target_modules must be a string or a list of strings, got {targets!r}"
        )
    return cfg


def check_adapters_config(cfg: dict, path: str = CONFIG_FILE) -> dict:
    """An ``adapters`` (AdapterHub) ``adapter_config.json``: its outer keys and their types, and the
    options readers rely on (`adapters_folder.config_problem`); the message names the key."""
    problem = af.config_problem(cfg, path)
    if problem:
        raise ValidationError("InvalidManifest", problem)
    return cfg


def check_adapters_json(path: str, parsed: dict) -> dict:
    """The other JSON files of an ``adapters`` folder (a head's, a fusion's, a setup's): the types of the
    fields their readers use. Keys of their own are kept: ``adapters`` writes more into them than
    into ``adapter_config.json`` (a flex head's options, a fusion's ``adapter_names``)."""
    name = path.rsplit("/", 1)[-1]
    fields: dict[str, tuple[type, ...]] = {"name": (str, type(None)), "model_type": (str, type(None)),
                                           "model_class": (str, type(None)), "model_name": (str, type(None)),
                                           "config": (dict, type(None)), "label2id": (dict, type(None)),
                                           "num_labels": (int, type(None)), "hidden_size": (int, type(None))}
    if name == af.FUSION_CONFIG_FILE:
        fields = {**fields, "adapter_names": (list, str)}
    elif name == af.SETUP_FILE:
        fields = {"adapter_setup": (dict, list, str, type(None)), "head_setup": (dict, list, str, type(None))}
    for key, types in fields.items():
        value = parsed.get(key)
        if key in parsed and (not isinstance(value, types) or isinstance(value, bool)):
            kinds = " or ".join("null" if t is type(None) else t.__name__ for t in types)
            raise ValidationError("InvalidManifest", f"{path}: {key!r} must be {kinds}, got {value!r}"[:300])
    return parsed


def check_sha256(value: str) -> str:
    if not isinstance(value, str) or not SHA256_RE.fullmatch(value):
        raise ValidationError("InvalidManifest", f"bad sha256 {value!r}: expected 64 lowercase hex digits")
    return value


@contextlib.contextmanager
def _answered_as(code: str) -> Iterator[None]:
    """The folder format's rules (``adapterhub.format``, the engine's too), refused with the API's code."""
    try:
        yield
    except FormatError as e:
        raise ValidationError(code, str(e)) from None


def parse_json_object(path: str, data: bytes) -> dict:
    with _answered_as("InvalidManifest"):
        return folder_format.parse_json_object(data, path)


def safetensors_header_length(path: str, first8: bytes, size: int) -> int:
    with _answered_as("BadSafetensors"):
        return folder_format.safetensors_header_length(first8, size, path)


def check_safetensors_header(path: str, header: bytes, size: int) -> dict:
    with _answered_as("BadSafetensors"):
        return folder_format.check_safetensors_header(header, size, path)
