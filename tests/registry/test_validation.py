"""Unit tests of the checks that run before anything is stored."""

from __future__ import annotations

import pytest

from adapterhub import format as folder_format
from adapterhub.registry.server.validation import (
    ValidationError,
    check_file_set,
    check_not_pickle,
    check_path,
    check_safetensors_header,
    parse_json_object,
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


@pytest.mark.parametrize("path,reason", [
    ("a\u0085b", "control characters are not allowed (U+0085)"),
    ("a\u202etxt.exe", "invisible format characters are not allowed (U+202E)"),
    ("zero\u200bwidth", "invisible format characters are not allowed (U+200B)"),
    ("\ufeffbom.json", "invisible format characters are not allowed (U+FEFF)"),
    ("a\u2028b", "line separators are not allowed (U+2028)"),
    ("a\u2029b", "paragraph separators are not allowed (U+2029)"),
    ("lone\ud800", "lone surrogates are not allowed (U+D800)"),
    ("x.bin ", "a name may not end in a space or a dot (Windows drops them)"),
    ("dir /x", "a name may not end in a space or a dot (Windows drops them)"),
    ("x.bin.", "a name may not end in a space or a dot (Windows drops them)"),
    ("x.bin::$DATA", "':' is not allowed (Windows reads it as a drive or a stream name)"),
    ("notes:v1.md", "':' is not allowed (Windows reads it as a drive or a stream name)"),
    ("\u00e9" * 128, "a name may hold at most 255 bytes of UTF-8"),
])
def test_paths_no_client_can_write_as_they_are_are_refused(path, reason):
    with pytest.raises(ValidationError) as e:
        check_path(path)
    assert e.value.code == "BadPath" and str(e.value) == f"bad path {path!r}: {reason}"


def test_a_name_of_255_bytes_and_ordinary_unicode_pass():
    for path in ("e" * 255, "d/" + "\u00e9" * 127 + "e", "docs/\u00fcber.md", "caf\u00e9 menu.md", "\u4e2d\u6587.txt"):
        assert check_path(path) == path


@pytest.mark.parametrize("path", ["x.bin ", "x.bin.", "X.BIN. .", "x.bin::$DATA", "x.bin:stream", "w/x.pt.."])
def test_the_pickle_test_sees_the_name_windows_would_store(path):
    with pytest.raises(ValidationError) as e:
        check_not_pickle(path)
    assert e.value.code == "PickleRefused"


@pytest.mark.parametrize("path", ["x.binary", "bin", "x.bin.safetensors", "x:y.bin.json"])
def test_names_that_only_contain_a_pickle_suffix_pass_the_pickle_test(path):
    check_not_pickle(path)


@pytest.mark.parametrize("paths,message", [
    (["x", "x/y"], "'x' is a file and also the folder of 'x/y'"),
    (["a/b/c", "a/b"], "'a/b' is a file and also the folder of 'a/b/c'"),
    (["Dir", "dir/f"], "'Dir' is a file and also the folder of 'dir/f'"),
    (["README.md", "readme.md"], "'README.md' and 'readme.md' differ only in case or Unicode form: "
                                 "one would overwrite the other"),
    (["STRASSE", "stra\u00dfe"], "'STRASSE' and 'stra\u00dfe' differ only in case or Unicode form: "
                                  "one would overwrite the other"),
    (["\u00e9", "e\u0301"], "'\u00e9' and 'e\u0301' differ only in case or Unicode form: one would overwrite the other"),
])
def test_file_sets_no_folder_can_hold_are_refused(paths, message):
    with pytest.raises(ValidationError) as e:
        check_file_set(paths)
    assert e.value.code == "BadPath" and str(e.value) == f"bad file set: {message}"


def test_file_sets_with_like_prefixes_pass():
    check_file_set(["x", "x!", "x.txt", "x-y/z", "xy/z", "x0/a", "a/b/c", "a/bc"])


@pytest.mark.parametrize("data,depth", [
    (b"{}", 1), (b'{"a": [1, {"b": []}]}', 4), (b'["]]]]", "[[[["]', 1), (b'["\\\\", [["\\"]]"]]', 3),
    (b"[" * 100_000, 100_000), (b"", 0),
])
def test_json_depth_skips_brackets_inside_strings(data, depth):
    assert folder_format.json_depth(data) == depth


@pytest.mark.parametrize("data,message", [
    (b"[" * 100_000 + b"]" * 100_000, "c.json nests deeper than 64 levels"),
    (b'{"a":' * 65 + b"1" + b"}" * 65, "c.json nests deeper than 64 levels"),
    (b'{"r": ' + b"9" * 5000 + b"}", "c.json holds an integer of more than 4300 digits"),
    (b"\xff{}", "c.json is not valid JSON: not UTF-8 (invalid start byte)"),
])
def test_json_the_parser_cannot_take_is_a_validation_error(data, message):
    with pytest.raises(ValidationError) as e:
        parse_json_object("c.json", data)
    assert e.value.code == "InvalidManifest" and str(e.value) == message


def test_json_at_the_depth_limit_parses():
    assert parse_json_object("c.json", b'{"a":' * 64 + b"1" + b"}" * 64)


def test_a_recursion_error_from_the_parser_is_still_a_validation_error(monkeypatch):
    def deep(_text):
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(folder_format.json, "loads", deep)
    with pytest.raises(ValidationError, match="^c.json nests too deeply to read$"):
        parse_json_object("c.json", b"{}")


def test_a_deep_safetensors_header_is_bad_safetensors():
    blob = raw_safetensors(b'{"a":' * 50_000 + b"1" + b"}" * 50_000)
    _, header = header_of(blob)
    with pytest.raises(ValidationError) as e:
        check_safetensors_header("w.safetensors", header, len(blob))
    assert e.value.code == "BadSafetensors" and str(e.value) == "w.safetensors: header nests deeper than 64 levels"
