"""What the registry refuses, in one leaf module that the client and the server both import.

Why here: the client checks a folder before it uploads a single byte, so a push the server would
refuse changes nothing; that only holds if both sides read the same table. No httpx, no server,
no torch.

>>> is_pickle_name("adapter_model.bin"), is_pickle_name("x.BIN. "), is_pickle_name("x.bin::$DATA")
(True, True, True)
>>> segment_problem("a\\u202etxt.exe")
'invisible format characters are not allowed (U+202E)'
>>> file_set_problem(["README.md", "readme.md"])
"'README.md' and 'readme.md' differ only in case or Unicode form: one would overwrite the other"
"""

from __future__ import annotations

import bisect
import unicodedata
from collections.abc import Iterable

# Weights in these formats are pickles: loading one can run arbitrary code, so none is accepted.
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")

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


def is_pickle_name(name: str) -> bool:
    """True for a name Windows stores as a pickle: it drops trailing dots and spaces, and reads
    ``x.bin:stream`` (``x.bin::$DATA``) as a stream of ``x.bin``, so ``endswith`` alone misses them."""
    return name.split(":", 1)[0].rstrip(" .").lower().endswith(PICKLE_SUFFIXES)


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
            return f"{by_key[key]!r} and {p!r} differ only in case or Unicode form: one would overwrite the other"
        by_key[key] = p
    keys = sorted(by_key)
    for key in keys:
        # every path below the folder ``key/`` sorts in one run right after ``key/`` itself
        i = bisect.bisect_left(keys, key + "/")
        if i < len(keys) and keys[i].startswith(key + "/"):
            return f"{by_key[key]!r} is a file and also the folder of {by_key[keys[i]]!r}"
    return None
