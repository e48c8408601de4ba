"""Checks on what is published, made without loading tensors or unpickling anything.

>>> check_path("weights/adapter_model.safetensors")
'weights/adapter_model.safetensors'
>>> check_path("../etc/passwd")
Traceback (most recent call last):
ValidationError: bad path '../etc/passwd': '..' segments are not allowed
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterable

import numpy as np

from adapterhub.registry.limits import (
    MAX_FILES_PER_VERSION,
    MAX_PATH_CHARS,
    PICKLE_SUFFIXES,
    char_problem,
    file_set_problem,
    is_pickle_name,
    segment_problem,
)

PEFT_TYPE_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")
MAX_HEADER = 100 * 1024 * 1024
SHA256_RE = re.compile(r"[0-9a-f]{64}")
# Far deeper than any adapter config, card or safetensors header; shallow enough that the
# recursive JSON parser never nears the interpreter's recursion limit.
MAX_JSON_DEPTH = 64
_STEPS = np.zeros(256, dtype=np.int8)  # a byte's change of depth
_STEPS[[ord("["), ord("{")]], _STEPS[[ord("]"), ord("}")]] = 1, -1
_CHUNK = 1 << 23
DTYPE_BYTES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "F8_E8M0": 1, "I16": 2, "U16": 2,
               "F16": 2, "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8,
               "C64": 8, "F4": 1, "F6_E2M3": 1, "F6_E3M2": 1}


class ValidationError(ValueError):
    """A refused input; ``code`` is the API error code."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


def check_path(path: str) -> str:
    """A relative POSIX path every client can write as it is: no ``..``, empty segments,
    backslashes, drive letters or stream names, and no segment `limits.segment_problem` refuses."""
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
    if is_pickle_name(path):
        raise ValidationError(
            "PickleRefused",
            f"refused {path!r}: pickle-based weights ({', '.join(PICKLE_SUFFIXES)}) can run code; "
            "save them as safetensors",
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
            "InvalidManifest", f"adapter_config.json: peft_type {peft_type!r} is not a method name such as 'LORA'"
        )
    r = cfg.get("r")
    if r is not None and (not isinstance(r, int) or isinstance(r, bool) or r <= 0):
        raise ValidationError("InvalidManifest", f"adapter_config.json: r must be a positive integer, got {r!r}")
    targets = cfg.get("target_modules")
    if targets is not None and not (isinstance(targets, str) or (
            isinstance(targets, list) and all(isinstance(t, str) for t in targets))):
        raise ValidationError(
            "InvalidManifest", f"adapter_config.json: target_modules must be a string or a list of strings, got {targets!r}"
        )
    return cfg


def check_sha256(value: str) -> str:
    if not isinstance(value, str) or not SHA256_RE.fullmatch(value):
        raise ValidationError("InvalidManifest", f"bad sha256 {value!r}: expected 64 lowercase hex digits")
    return value


def json_depth(data: bytes) -> int:
    """How deep ``data`` nests, without recursion: the parser recurses once per level, so it must
    not meet a document of 100k brackets (RecursionError mid-request). Escapes out (``\\\\`` pairs,
    then ``\\"``), so the quotes left alternate open/close; then the highest running sum of the
    brackets outside them, vectorised in chunks. Where this reading of invalid JSON differs from
    the parser's, the parser has already stopped with an error.

    >>> json_depth(b'{"a": [[1], "]]]]"]}'), json_depth(b"[" * 100_000), json_depth(b'["[[[')
    (3, 100000, 1)
    """
    text = np.frombuffer(data.replace(b"\\\\", b"").replace(b'\\"', b""), dtype=np.uint8)
    deepest = depth = quotes = 0
    for at in range(0, len(text), _CHUNK):
        chunk = text[at:at + _CHUNK]
        in_string = (np.cumsum(chunk == ord('"'), dtype=np.int32) + quotes) & 1
        running = np.cumsum(np.where(in_string == 1, 0, _STEPS[chunk]), dtype=np.int32) + depth
        deepest, depth, quotes = max(deepest, int(running.max())), int(running[-1]), int(in_string[-1])
    return deepest


def load_json(data: bytes, code: str, what: str) -> object:
    """``json.loads`` for bytes a client sent, every failure a `ValidationError` with ``code``: past
    bad syntax and bad UTF-8, the parser raises ValueError for an integer over Python's digit limit
    and RecursionError for deep nesting (refused beforehand), which would otherwise answer 500."""
    if json_depth(data) > MAX_JSON_DEPTH:
        raise ValidationError(code, f"{what} nests deeper than {MAX_JSON_DEPTH} levels")
    try:
        return json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise ValidationError(code, f"{what} is not valid JSON: not UTF-8 ({e.reason})") from None
    except json.JSONDecodeError as e:
        raise ValidationError(code, f"{what} is not valid JSON: {e}") from None
    except ValueError:
        raise ValidationError(
            code, f"{what} holds an integer of more than {sys.get_int_max_str_digits()} digits") from None
    except RecursionError:
        raise ValidationError(code, f"{what} nests too deeply to read") from None


def parse_json_object(path: str, data: bytes) -> dict:
    obj = load_json(data, "InvalidManifest", path)
    if not isinstance(obj, dict):
        raise ValidationError("InvalidManifest", f"{path} must hold a JSON object, found {type(obj).__name__}")
    return obj


def safetensors_header_length(path: str, first8: bytes, size: int) -> int:
    """Validate the 8-byte little-endian header length against the file size; return it."""
    if size < 8 or len(first8) < 8:
        raise ValidationError("BadSafetensors", f"{path}: {size} bytes is too short for a safetensors file")
    n = int.from_bytes(first8[:8], "little")
    if n > MAX_HEADER or n > size - 8:
        raise ValidationError(
            "BadSafetensors", f"{path}: header length {n} exceeds the limit or the file size ({size} bytes)"
        )
    return n


def check_safetensors_header(path: str, header: bytes, size: int) -> dict:
    """Check the JSON header: entries with dtype/shape/offsets inside the data, not overlapping."""
    n = len(header)
    meta = load_json(header, "BadSafetensors", f"{path}: header")
    if not isinstance(meta, dict):
        raise ValidationError("BadSafetensors", f"{path}: header must be a JSON object")
    data_len = size - 8 - n
    spans = []
    for name, info in meta.items():
        if name == "__metadata__":
            if not isinstance(info, dict):
                raise ValidationError("BadSafetensors", f"{path}: __metadata__ must be an object")
            continue
        if not isinstance(info, dict) or not {"dtype", "shape", "data_offsets"} <= info.keys():
            raise ValidationError("BadSafetensors", f"{path}: tensor {name!r} lacks dtype/shape/data_offsets")
        offs, shape = info["data_offsets"], info["shape"]
        if (not isinstance(offs, list) or len(offs) != 2 or not all(isinstance(o, int) for o in offs)
                or not 0 <= offs[0] <= offs[1] <= data_len):
            raise ValidationError(
                "BadSafetensors", f"{path}: tensor {name!r} offsets {offs} lie outside the data ({data_len} bytes)"
            )
        if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
            raise ValidationError("BadSafetensors", f"{path}: tensor {name!r} has a bad shape {shape!r}")
        width = DTYPE_BYTES.get(info["dtype"])
        if width is None:
            raise ValidationError("BadSafetensors", f"{path}: tensor {name!r} has unknown dtype {info['dtype']!r}")
        count = 1
        for d in shape:
            count *= d
        if info["dtype"] not in ("F4", "F6_E2M3", "F6_E3M2") and count * width != offs[1] - offs[0]:
            raise ValidationError(
                "BadSafetensors",
                f"{path}: tensor {name!r} needs {count * width} bytes for {shape} {info['dtype']}, "
                f"offsets give {offs[1] - offs[0]}",
            )
        spans.append((offs[0], offs[1], name))
    spans.sort()
    for (_a0, a1, an), (b0, _b1, bn) in zip(spans, spans[1:], strict=False):
        if b0 < a1:
            raise ValidationError("BadSafetensors", f"{path}: tensors {an!r} and {bn!r} overlap")
    return meta
