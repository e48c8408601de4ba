"""The folder format: one set of rules that the engine, the client and the server all apply."""

from __future__ import annotations

import json
import os
import random
import struct
import subprocess
import sys

import pytest

from adapterhub import format as fmt
from adapterhub.errors import InvalidAdapterError


def _safetensors(entries: dict, data: bytes) -> bytes:
    header = json.dumps(entries).encode()
    return struct.pack("<Q", len(header)) + header + data


SHORT_TENSOR = _safetensors({"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, b"\0" * 8)
NEEDS_12_BYTES = r"tensor 'w' needs 12 bytes for \[3\] F32, offsets give 8$"


def test_format_needs_nothing_but_the_standard_library():
    code = ("import sys, adapterhub.format; print(sorted(m for m in "
            "('torch', 'numpy', 'httpx', 'safetensors', 'fastapi') if m in sys.modules))")
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert found.stdout.strip() == "[]"


def test_a_header_whose_shape_disagrees_with_its_offsets_is_refused_by_engine_and_server_alike(tmp_path):
    """Once only the server checked shape x dtype width; a folder it refused could still load locally."""
    from adapterhub.compose.folder.load import read_weights
    from adapterhub.registry.server.validation import ValidationError, check_safetensors_header

    (tmp_path / fmt.WEIGHTS_FILE).write_bytes(SHORT_TENSOR)
    with pytest.raises(InvalidAdapterError, match=NEEDS_12_BYTES):
        read_weights(tmp_path)
    n = fmt.safetensors_header_length(SHORT_TENSOR[:8], len(SHORT_TENSOR), "w")
    with pytest.raises(ValidationError, match=NEEDS_12_BYTES) as e:
        check_safetensors_header(fmt.WEIGHTS_FILE, SHORT_TENSOR[8:8 + n], len(SHORT_TENSOR))
    assert e.value.code == "BadSafetensors"


def test_a_well_formed_header_is_returned():
    entries = {"w": {"dtype": "BF16", "shape": [2, 2], "data_offsets": [0, 8]}, "__metadata__": {}}
    blob = _safetensors(entries, b"\0" * 8)
    assert fmt.check_safetensors_header(blob[8:-8], len(blob), "w")["w"]["shape"] == [2, 2]


@pytest.mark.parametrize("name", ["adapter_model.bin", "x.PT", "x.ckpt.", "x.pkl::$DATA", "model.pickle "])
def test_pickle_names_are_known_however_windows_spells_them(name):
    assert fmt.is_pickle_name(name)


def test_json_reader_names_the_file_and_the_problem(tmp_path):
    path = tmp_path / fmt.CONFIG_FILE
    with pytest.raises(fmt.FormatError, match=f"^{tmp_path}: missing adapter_config.json$"):
        fmt.read_json_object(path)
    path.write_text("[1]")
    with pytest.raises(fmt.FormatError, match="adapter_config.json must hold a JSON object, found list$"):
        fmt.read_json_object(path)
    path.write_bytes(b"\xff{}")
    with pytest.raises(fmt.FormatError, match=r"is not valid JSON: not UTF-8 \(invalid start byte\)$"):
        fmt.read_json_object(path)


def test_json_past_the_depth_limit_is_refused_before_the_parser_meets_it(tmp_path):
    assert fmt.parse_json_object(b'{"a":' * 64 + b"1" + b"}" * 64, "c.json")
    with pytest.raises(fmt.FormatError, match="^c.json nests deeper than 64 levels$"):
        fmt.parse_json_object(b'{"a":' * 65 + b"1" + b"}" * 65, "c.json")
    (tmp_path / fmt.CONFIG_FILE).write_bytes(b"[" * 100_000 + b"]" * 100_000)  # the engine's reader too
    with pytest.raises(InvalidAdapterError, match="adapter_config.json nests deeper than 64 levels$"):
        fmt.read_json_object(tmp_path / fmt.CONFIG_FILE)


def _depth_walked(data: bytes) -> int:
    """The plain reading json_depth must agree with: escapes out, quotes toggle, brackets count."""
    deepest = depth = 0
    in_string = False
    for c in data.replace(b"\\\\", b"").replace(b'\\"', b""):
        if c == ord('"'):
            in_string = not in_string
        elif not in_string and c in b"[{":
            depth += 1
            deepest = max(deepest, depth)
        elif not in_string and c in b"]}":
            depth -= 1
    return deepest


@pytest.mark.parametrize("chunk", [None, 7], ids=["whole", "cut-into-chunks"])
def test_json_depth_agrees_with_walking_the_brackets_one_by_one(monkeypatch, chunk):
    if chunk:  # strings and mountains cut at chunk edges count as uncut
        monkeypatch.setattr(fmt, "_CHUNK", chunk)
    rng = random.Random(0)
    docs = [bytes(rng.choice(b'[]{}"\\ a') for _ in range(rng.randint(0, 40))) for _ in range(3000)]
    docs += [bytes(rng.choice(b"[[]]{}" if i % 2 else b"[]") for _ in range(rng.randint(500, 3000)))
             for i in range(100)]
    docs += [(b"[" * d + b"]" * d) * 50 for d in (1, 5, 12, 40)] + [b"]" + b"[]" * 100 + b"[[", b'"[' * 7]
    assert [fmt.json_depth(d) for d in docs] == [_depth_walked(d) for d in docs]


def test_an_atomic_write_that_fails_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "card.json"
    fmt.write_json(path, {"a": 1})
    with pytest.raises(TypeError):
        fmt.write_text_atomic(path, object())  # not text: fails mid-write
    assert json.loads(path.read_text()) == {"a": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["card.json"]


def test_atomic_writes_give_the_mode_asked_for_else_the_usual_one(tmp_path):
    umask = os.umask(0o022)
    try:
        assert fmt.write_json(tmp_path / "card.json", {}).stat().st_mode & 0o777 == 0o644
        assert fmt.write_text_atomic(tmp_path / "token", "t", mode=0o600).stat().st_mode & 0o777 == 0o600
    finally:
        os.umask(umask)


def test_an_atomic_folder_that_fails_leaves_no_folder(tmp_path):
    target = tmp_path / "out"
    with pytest.raises(RuntimeError), fmt.atomic_folder(target) as tmp:
        (tmp / fmt.CONFIG_FILE).write_text("{}")
        raise RuntimeError("crash mid-save")
    assert list(tmp_path.iterdir()) == []


def test_the_folder_scan_refuses_pickles_before_a_push(tmp_path):
    (tmp_path / fmt.CONFIG_FILE).write_text("{}")
    (tmp_path / "adapter_model.bin").write_bytes(b"\0")
    with pytest.raises(InvalidAdapterError, match="pickle-based weights can run code"):
        fmt.scan_folder(tmp_path)
