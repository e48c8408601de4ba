"""Unit tests of the checks that run before anything is stored."""

from __future__ import annotations

import pytest

from adapterhub.registry.server.validation import (
    ValidationError,
    check_path,
    check_safetensors_header,
    safetensors_header_length,
)
from tests.registry.factory import raw_safetensors, safetensors_bytes


def header_of(blob: bytes) -> tuple[int, bytes]:
    n = safetensors_header_length("f", blob[:8], len(blob))
    return n, blob[8:8 + n]


def test_real_safetensors_file_passes():
    blob = safetensors_bytes(3, n=5)
    _, header = header_of(blob)
    meta = check_safetensors_header("f", header, len(blob))
    assert len([k for k in meta if k != "__metadata__"]) == 5


def test_dtype_and_shape_must_match_offsets():
    blob = raw_safetensors({"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, b"\0" * 8)
    _, header = header_of(blob)
    with pytest.raises(ValidationError, match=r"needs 12 bytes for \[3\] F32, offsets give 8"):
        check_safetensors_header("f", header, len(blob))


def test_header_length_beyond_file_is_refused():
    with pytest.raises(ValidationError, match="exceeds the limit or the file size"):
        safetensors_header_length("f", (50).to_bytes(8, "little"), 20)


@pytest.mark.parametrize("path", ["a.json", "dir/sub/x.safetensors", "README.md", ".hidden"])
def test_good_paths(path):
    assert check_path(path) == path


@pytest.mark.parametrize("path", ["", "..", "a/..", "/abs", "C:/x", "a\\b", "a\nb", "./a", "a/", "x\x7f"])
def test_bad_paths(path):
    with pytest.raises(ValidationError) as e:
        check_path(path)
    assert e.value.code == "BadPath"
