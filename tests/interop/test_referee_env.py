"""The adapters 1.3 referee environment: it runs, it loads our tiny bases as we do, it writes folders."""

from __future__ import annotations

import json

import pytest
import torch

from tests.helpers.tiny import batch, build
from tests.interop import referee

ARCHS = {"bert-seqcls": "seqcls", "gpt2": "causal", "llama-causal": "causal"}


@pytest.fixture(scope="module")
def bases(tmp_path_factory):
    root = tmp_path_factory.mktemp("bases")
    return {arch: referee.save_tiny_base(build(arch), root / arch) for arch in ARCHS}


def test_environment_versions():
    v = referee.versions()
    assert v["adapters"] == "1.3.0"
    assert v["transformers"].startswith("4.57.")


def test_bare_base_logits_match_ours(bases):
    ids, mask = batch()
    mask[0, -3:] = 0  # a padded row too
    theirs = referee.adapters_logits_many([dict(base_dir=bases[a], head=h, adapters=None, setup=None,
                                                input_ids=ids, attention_mask=mask) for a, h in ARCHS.items()])
    for (arch, _), got in zip(ARCHS.items(), theirs, strict=True):
        with torch.no_grad():
            ours = build(arch)(input_ids=ids, attention_mask=mask).logits.float()
        assert got.shape == ours.shape, arch
        torch.testing.assert_close(got, ours, atol=1e-5, rtol=0, msg=lambda m, a=arch: f"{a}: {m}")


def test_make_writes_seq_bn_folders(bases, tmp_path):
    jobs = [dict(base_dir=bases[a], head=h, config="seq_bn", kwargs={"reduction_factor": 4}, name="x", seed=3,
                 out=tmp_path / a) for a, h in ARCHS.items()]
    for (arch, head), out in zip(ARCHS.items(), referee.make_adapters(jobs), strict=True):
        expected = {"adapter_config.json", "adapter.safetensors"}
        if head == "seqcls":
            expected |= {"head_config.json", "model_head.safetensors"}
        assert {p.name for p in out.iterdir()} == expected, arch
        config = json.loads((out / "adapter_config.json").read_text())
        assert config["name"] == "x" and config["version"] == "adapters.1.3.0", arch
        assert config["config"]["reduction_factor"] == 4 and config["config"]["output_adapter"] is True, arch


def test_missing_environment_fails_not_skips(monkeypatch, tmp_path):
    monkeypatch.setenv("ADAPTERHUB_ADAPTERS_PYTHON", str(tmp_path / "nope" / "python"))
    with pytest.raises(pytest.fail.Exception, match="make interop-env"):
        referee.adapters_python()


def test_side_errors_come_back_as_assertion(bases, tmp_path):
    with pytest.raises(AssertionError, match="adapters_side: .*Error"):
        referee.make_adapter(bases["gpt2"], "causal", "prompt_tuning", {}, "x", 0, tmp_path / "pt")
