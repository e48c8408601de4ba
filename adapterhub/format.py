"""The adapter folder format, written once: its file names, what a folder may hold, the JSON and
safetensors rules, and how a folder is written so that no reader sees half of one.

Why one module: the client checks a folder before it uploads a byte, the server checks it again
at publish, and the engine checks it before it loads a tensor. A folder the server accepts must
load in the engine, and a push the server would refuse must fail before it changes anything;
that holds only while all three read the same rules. Standard library only (no torch, numpy,
httpx or server), so every room may import it.

>>> is_pickle_name("adapter_model.bin"), is_pickle_name("x.BIN. "), is_pickle_name("x.bin::$DATA")
(True, True, True)
>>> segment_problem("a\\u202etxt.exe")
'invisible format characters are not allowed (U+202E)'
>>> file_set_problem(["README.md", "readme.md"])
"'README.md' and 'readme.md' differ only in case or Unicode form: one would overwrite the other"
"""

from __future__ import annotations

import bisect
import contextlib
import json
import os
import secrets
import shutil
import sys
import tempfile
import unicodedata
from collections.abc import Iterable, Iterator
from itertools import accumulate, repeat
from operator import add, mul, sub
from pathlib import Path
from typing import Any

from adapterhub.adapters_folder import pickle_advice
from adapterhub.errors import InvalidAdapterError

# ---------------------------------------------------------------------- the files of a folder
CONFIG_FILE = "adapter_config.json"  # PEFT's schema wherever PEFT has the method
WEIGHTS_FILE = "adapter_model.safetensors"  # PEFT's key names wherever PEFT has the method
CARD_FILE = "adapterhub.json"  # our card: method, base fingerprint, task, labels, data, metrics
README_FILE = "README.md"  # the model card people read
RECIPE_FILE = "composition.json"  # a saved composition: its block and the adapters it names

# Weights in these formats are pickles: loading one can run arbitrary code, so none is accepted.
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
# What transformers' Trainer saves beside a model it pushes: its own state, pickled, and never part
# of an adapter. A Hugging Face push leaves these out (the preupload answers "shouldIgnore"), so that
# Trainer(push_to_hub=True) works; any other pickle is refused.
TRAINER_STATE_FILES = frozenset({"training_args.bin", "optimizer.pt", "scheduler.pt", "scaler.pt", "rng_state.pth"})
# An adapter folder holds a handful of files; thousands mean a wrong folder (a dataset, a venv).
MAX_FILES_PER_VERSION = 1000
MAX_PATH_CHARS = 1024
# The longest file name ext4, APFS, NTFS and most others store (NTFS counts UTF-16 units, so
# UTF-8 bytes is the stricter measure): a longer segment is a version no client can pull.
MAX_SEGMENT_BYTES = 255
# Characters no name may hold, by Unicode category: they make a name display as another one (bidi
# overrides, zero-width spaces), break a line in a log or a listing, or cannot be written to a file
# system at all (lone surrogates).
REFUSED_CATEGORIES = {"Cc": "control characters", "Cf": "invisible format characters",
                      "Zl": "line separators", "Zp": "paragraph separators", "Cs": "lone surrogates"}

# Far deeper than any adapter config, card or safetensors header; shallow enough that the
# recursive JSON parser never nears the interpreter's recursion limit.
MAX_JSON_DEPTH = 64
_BRACKETS = bytes.maketrans(b"[{]}", b"(())")
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b'[]{}"')
_CHUNK = 1 << 20

MAX_HEADER = 100 * 1024 * 1024
# The dtypes the engine can load, with their widths: the server refuses any other, so that what
# it accepts always loads (8-bit floats and unsigned wide ints are safetensors' but not ours).
DTYPE_BYTES = {"BOOL": 1, "U8": 1, "I8": 1, "I16": 2, "F16": 2, "BF16": 2, "I32": 4, "F32": 4,
               "I64": 8, "F64": 8}


class FormatError(InvalidAdapterError):
    """What breaks the folder format; the message names the file and the rule. The engine and the
    client raise it as it is (an InvalidAdapterError); the server answers it as a 422 with its code."""


# ---------------------------------------------------------------------- names
def is_pickle_name(name: str) -> bool:
    """True for a name Windows stores as a pickle: it drops trailing dots and spaces, and reads
    ``x.bin:stream`` (``x.bin::$DATA``) as a stream of ``x.bin``, so ``endswith`` alone misses them."""
    return name.split(":", 1)[0].rstrip(" .").lower().endswith(PICKLE_SUFFIXES)


def is_trainer_state(path: str) -> bool:
    """True for a Trainer state file (`TRAINER_STATE_FILES`), at any depth (checkpoint folders)."""
    name = path.rsplit("/", 1)[-1]
    return name in TRAINER_STATE_FILES or (name.startswith("rng_state_") and name.endswith(".pth")
                                           and name[len("rng_state_"):-len(".pth")].isdigit())


def char_problem(text: str) -> str | None:
    """Why ``text`` may not be (part of) a file name, judging by its characters alone; None if it may."""
    for c in text:
        kind = REFUSED_CATEGORIES.get(unicodedata.category(c))
        if kind:
            return f"{kind} are not allowed" + ("" if c.isascii() else f" (U+{ord(c):04X})")
    return None


def segment_problem(segment: str) -> str | None:
    """Why one path segment (a file or folder name) cannot be stored as it is on every client
    file system; None if it can. Structure (``..``, empty segments) is the caller's concern."""
    problem = char_problem(segment)
    if problem:
        return problem
    if ":" in segment:
        return "':' is not allowed (Windows reads it as a drive or a stream name)"
    if segment.rstrip(" .") != segment and segment not in (".", ".."):
        return "a name may not end in a space or a dot (Windows drops them)"
    if len(segment.encode("utf-8")) > MAX_SEGMENT_BYTES:
        return f"a name may hold at most {MAX_SEGMENT_BYTES} bytes of UTF-8"
    return None


def _folded(path: str) -> str:
    """The form under which case-insensitive (Windows) and normalising (macOS) file systems see
    two names as one: Unicode canonical caseless matching."""
    return unicodedata.normalize("NFD", unicodedata.normalize("NFD", path).casefold())


def file_set_problem(paths: Iterable[str]) -> str | None:
    """Why these (individually valid, distinct) paths cannot all be written to one folder; None if
    they can: two that fold to one name, or a file that is also another file's folder. Sorting
    makes this O(n log n) however deep the paths are."""
    by_key: dict[str, str] = {}
    for p in paths:
        key = _folded(p)
        if key in by_key and by_key[key] != p:
            return (f"{by_key[key]!r} and {p!r} differ only in case or Unicode form: "
                    "one would overwrite the other")
        by_key[key] = p
    keys = sorted(by_key)
    for key in keys:
        # every path below the folder ``key/`` sorts in one run right after ``key/`` itself
        i = bisect.bisect_left(keys, key + "/")
        if i < len(keys) and keys[i].startswith(key + "/"):
            return f"{by_key[key]!r} is a file and also the folder of {by_key[keys[i]]!r}"
    return None


def scan_folder(root: Path) -> list[Path]:
    """Every file under ``root``, sorted. Refuses what the registry would refuse and can be seen
    from names alone (symlinks, special files, pickles, control characters, too many files), so
    that such a push fails before it creates an adapter or uploads a byte."""
    if not root.is_dir():
        raise FormatError(f"{root} is not a folder")
    if root.is_symlink():
        raise FormatError(f"refusing to push {root}: it is a symlink; push the folder it points to")
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        files = set(filenames)
        for entry in sorted(dirnames + filenames):
            path = Path(dirpath) / entry
            if path.is_symlink():
                raise FormatError(f"refusing to push {path}: symlinks are not allowed in an adapter folder")
            problem = "backslashes are not allowed" if "\\" in entry else segment_problem(entry)
            if problem:
                raise FormatError(f"refusing to push {str(path)!r}: {problem}")
            if entry not in files:
                continue
            if not path.is_file():
                raise FormatError(f"refusing to push {path}: not a regular file")
            if is_pickle_name(entry):
                raise FormatError(
                    f"refusing to push {path}: pickle-based weights can run code when loaded; "
                    + (pickle_advice(entry) or "save them as safetensors"))
            found.append(path)
            if len(found) > MAX_FILES_PER_VERSION:  # stop walking: a home folder pushed by mistake is huge
                raise FormatError(f"refusing to push {root}: it holds more than {MAX_FILES_PER_VERSION} "
                                  "files, the most a version may hold")
    if not found:
        raise FormatError(f"{root} is empty: nothing to push")
    problem = file_set_problem(p.relative_to(root).as_posix() for p in found)
    if problem:
        raise FormatError(f"refusing to push {root}: {problem}")
    return sorted(found)


# ---------------------------------------------------------------------- JSON
def json_depth(data: bytes) -> int:
    """How deep ``data`` nests, without recursion: the parser recurses once per level, so it must
    not meet a document of 100k brackets. Where this reading of invalid JSON differs from the
    parser's, the parser has already stopped with an error.

    >>> json_depth(b'{"a": [[1], "]]]]"]}'), json_depth(b"[" * 100_000), json_depth(b'["[[[')
    (3, 100000, 1)
    """
    return _highest_point(_brackets_outside_strings(data))


def _brackets_outside_strings(data: bytes) -> bytes:
    """``(`` and ``)`` for the brackets outside strings. Escapes go first (``\\\\`` pairs, then
    ``\\"``), so the quotes left alternate open/close; ``""`` goes next (an empty string, or two
    strings with no bracket between them: nothing is lost), then what lies between quotes. In
    chunks, so that a list of one piece per string stays small."""
    text = data.replace(b"\\\\", b"").replace(b'\\"', b"")
    text = text.translate(_BRACKETS, _NOT_BRACKETS).replace(b'""', b"")
    walk, in_string = bytearray(), 0
    for at in range(0, len(text), _CHUNK):
        pieces = text[at:at + _CHUNK].split(b'"')
        walk += b"".join(pieces[in_string::2])
        in_string ^= (len(pieces) - 1) & 1
    return bytes(walk)


def _highest_point(walk: bytes) -> int:
    """The highest running sum of a walk of ``(`` (+1) and ``)`` (-1) from 0, in bulk bytes
    operations (this module is standard library only, so no numpy). A pass deletes every ``()``:
    while the walk ends going down, every highest point is such a peak, so a pass lowers the answer
    by exactly one. Passes run while they shrink the walk by a tenth or more (shallow documents); a
    deeper rest is cut at its valleys into mountains ``(((...)))``, each as high as its ``(``."""
    deepest = depth = 0
    while True:
        rest = walk.lstrip(b")")  # going down first: no new highest point
        deepest, depth = max(deepest, depth), depth - (len(walk) - len(rest))
        if not rest:
            return deepest
        if rest[-1] != ord(")"):
            rest += b")"
        walk = rest.replace(b"()", b"")
        if (len(rest) - len(walk)) * 10 < len(rest):
            break
        depth += 1
    for at in range(0, len(rest), _CHUNK):
        mountains = rest[at:at + _CHUNK].replace(b")(", b")|(").split(b"|")
        ups = list(map(bytes.count, mountains, repeat(b"(")))
        nets = list(map(sub, map(mul, ups, repeat(2)), map(len, mountains)))
        deepest = max(deepest, *map(add, accumulate(nets, initial=depth), ups))
        depth += sum(nets)
    return deepest


def parse_json(data: bytes, what: str) -> Any:
    """``json.loads`` for bytes from outside, every failure a FormatError naming ``what``: nesting
    past `MAX_JSON_DEPTH` is refused before the parser meets it; past bad syntax and bad UTF-8, the
    parser raises ValueError for an integer over Python's digit limit, which would otherwise escape
    as something else."""
    if json_depth(data) > MAX_JSON_DEPTH:
        raise FormatError(f"{what} nests deeper than {MAX_JSON_DEPTH} levels")
    try:
        return json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise FormatError(f"{what} is not valid JSON: not UTF-8 ({e.reason})") from None
    except json.JSONDecodeError as e:
        raise FormatError(f"{what} is not valid JSON: {e}") from None
    except ValueError:
        digits = sys.get_int_max_str_digits()
        raise FormatError(f"{what} holds an integer of more than {digits} digits") from None
    except RecursionError:
        raise FormatError(f"{what} nests too deeply to read") from None


def parse_json_object(data: bytes, what: str) -> dict[str, Any]:
    obj = parse_json(data, what)
    if not isinstance(obj, dict):
        raise FormatError(f"{what} must hold a JSON object, found {type(obj).__name__}")
    return obj


def read_json_object(path: Path) -> dict[str, Any]:
    """A folder's JSON file (config, card, recipe) as a dict, or a FormatError naming the file."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise FormatError(f"{Path(path).parent}: missing {Path(path).name}") from None
    except OSError as exc:
        raise FormatError(f"cannot read {path}: {exc.strerror or exc}") from None
    return parse_json_object(data, str(path))


# ---------------------------------------------------------------------- safetensors
def safetensors_header_length(first8: bytes, size: int, what: str) -> int:
    """The 8-byte little-endian header length, checked against the file size and our limit."""
    if size < 8 or len(first8) < 8:
        raise FormatError(f"{what}: {size} bytes is too short for a safetensors file")
    n = int.from_bytes(first8[:8], "little")
    if n > MAX_HEADER or n > size - 8:
        raise FormatError(f"{what}: header length {n} exceeds the limit or the file size ({size} bytes)")
    return n


def check_safetensors_header(header: bytes, size: int, what: str) -> dict[str, Any]:
    """The JSON header of a file of ``size`` bytes: every tensor a dtype we load, a shape whose
    bytes are exactly its offsets' span, inside the data and overlapping no other."""
    meta = parse_json(header, f"{what}: header")
    if not isinstance(meta, dict):
        raise FormatError(f"{what}: header must be a JSON object")
    data_len = size - 8 - len(header)
    spans = []
    for name, info in meta.items():
        if name == "__metadata__":
            if not isinstance(info, dict):
                raise FormatError(f"{what}: __metadata__ must be an object")
            continue
        if not isinstance(info, dict) or not {"dtype", "shape", "data_offsets"} <= info.keys():
            raise FormatError(f"{what}: tensor {name!r} lacks dtype/shape/data_offsets")
        offs, shape, dtype = info["data_offsets"], info["shape"], info["dtype"]
        if (not isinstance(offs, list) or len(offs) != 2 or not all(type(o) is int for o in offs)
                or not 0 <= offs[0] <= offs[1] <= data_len):
            raise FormatError(
                f"{what}: tensor {name!r} offsets {offs} lie outside the data ({data_len} bytes)")
        if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
            raise FormatError(f"{what}: tensor {name!r} has a bad shape {shape!r}")
        width = DTYPE_BYTES.get(dtype) if isinstance(dtype, str) else None
        if width is None:
            raise FormatError(f"{what}: tensor {name!r} has dtype {dtype!r}, which adapterhub cannot load "
                              f"(one of {', '.join(DTYPE_BYTES)})")
        count = 1
        for d in shape:
            count *= d
        if count * width != offs[1] - offs[0]:
            raise FormatError(f"{what}: tensor {name!r} needs {count * width} bytes for {shape} {dtype}, "
                              f"offsets give {offs[1] - offs[0]}")
        spans.append((offs[0], offs[1], name))
    spans.sort()
    for (_a0, a1, an), (b0, _b1, bn) in zip(spans, spans[1:], strict=False):
        if b0 < a1:
            raise FormatError(f"{what}: tensors {an!r} and {bn!r} overlap")
    return meta


def check_safetensors_file(path: Path) -> dict[str, Any]:
    """The header of a safetensors file on disk, checked by the rules above without loading tensors."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        n = safetensors_header_length(f.read(8), size, str(path))
        return check_safetensors_header(f.read(n), size, str(path))


# ---------------------------------------------------------------------- atomic writes
def fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def write_text_atomic(path: Path, text: str, mode: int | None = None) -> Path:
    """Write ``text`` to a temporary sibling, fsync, rename over ``path``: readers see the old file
    or the new one, never a part. ``mode`` (0600 for a secret) is set before a byte is written;
    without it the file gets what ``open`` gives (0666 less the umask), so that a saved folder is as
    readable as any other file its owner writes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666 if mode is None else 0o600)
    try:
        if mode is not None:
            os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def dump_json(data: Any) -> str:
    """How every JSON file of a folder is written: sorted keys, two-space indent, a final newline."""
    return json.dumps(data, indent=2, sort_keys=True, default=str) + "\n"


def write_json(path: Path, data: Any) -> Path:
    return write_text_atomic(path, dump_json(data))


def replace_dir(tmp: Path, path: Path) -> None:
    """Rename the finished folder ``tmp`` to ``path``, moving an old ``path`` aside first."""
    if path.exists():
        old = path.with_name(f".{path.name}.old-{os.getpid()}")
        os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, path)


@contextlib.contextmanager
def atomic_folder(path: Path) -> Iterator[Path]:
    """Yield a temporary sibling of ``path`` to fill; on success fsync its files and rename it into
    place (replacing ``path``), on any error remove it, so readers never see a half-written folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        yield tmp
        for f in tmp.rglob("*"):
            if f.is_file():
                fsync_file(f)
        replace_dir(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
