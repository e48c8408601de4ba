"""`adapters`' saved setups (`save_adapter_setup`: adapter_setup.json, a folder per adapter, one per
fusion) load here as a recipe (`load_composition`) with `adapters`' logits, and ours save as one
(`save_composition(..., format="adapters")`) that `adapters`' `load_adapter_setup` reads with ours."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

import adapterhub as ah
from adapterhub.errors import InvalidAdapterError
from tests.helpers.model_state import assert_model_unchanged, model_snapshot
from tests.helpers.tiny import batch, build
from tests.interop.referee import make_adapters, make_fusion, run_batch, save_tiny_base

pytestmark = pytest.mark.slow  # each file starts the adapters environment: ~10 s of imports, then the work

ARCHS = {"bert-seqcls": "seqcls", "llama-causal": "causal"}
SETUPS = {"stack": {"stack": ["a", "b"]}, "fuse": {"fuse": ["a", "b"]}}
ATOL = 1e-5


def logits_of_setup(jobs: list[tuple[str, str, object]], tmp) -> list[torch.Tensor]:
    """adapters' logits for each (base dir, head, setup folder), in one interpreter."""
    ids, mask = batch()
    inputs = tmp / "inputs.safetensors"
    save_file({"input_ids": ids.contiguous(), "attention_mask": mask.contiguous()}, str(inputs))
    argvs = [["logits", "--base", base, "--head", head, "--setup-folder", folder, "--inputs", inputs,
              "--out", tmp / f"logits-{i}.safetensors"] for i, (base, head, folder) in enumerate(jobs)]
    run_batch(argvs)
    return [load_file(str(tmp / f"logits-{i}.safetensors"))["logits"] for i in range(len(jobs))]


def ours(arch: str, model: ah.AdapterModel) -> torch.Tensor:
    ids, mask = batch()
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=mask).logits


@pytest.fixture(scope="module")
def saved_by_adapters(tmp_path_factory):
    """Per arch: two Pfeiffer adapters and a fusion over them, made in adapters, and its setups."""
    root = tmp_path_factory.mktemp("setups")
    out = {}
    for arch, head in ARCHS.items():
        base = save_tiny_base(build(arch), root / arch / "base")
        a, b = make_adapters([dict(base_dir=base, head=head, config="seq_bn", kwargs={"reduction_factor": 4},
                                   name=n, seed=s, out=root / arch / n) for n, s in (("a", 1), ("b", 2))])
        fusion = make_fusion(base, head, [a, b], seed=3, out=root / arch / "fusion")
        argvs = [["save-setup", "--base", base, "--head", head, "--adapter", a, "--adapter", b,
                  *(["--fusion", fusion] if kind == "fuse" else []), "--setup", json.dumps(setup),
                  "--out", root / arch / f"setup-{kind}"] for kind, setup in SETUPS.items()]
        run_batch(argvs)
        out[arch] = (base, {kind: root / arch / f"setup-{kind}" for kind in SETUPS})
    return out


def test_an_adapters_setup_loads_as_a_recipe_with_adapters_logits(saved_by_adapters, tmp_path):
    jobs = [(base, ARCHS[arch], folder) for arch, (base, folders) in saved_by_adapters.items()
            for folder in folders.values()]
    theirs = iter(logits_of_setup(jobs, tmp_path))
    for arch, (_, folders) in saved_by_adapters.items():
        for kind, folder in folders.items():
            model = ah.AdapterModel(build(arch))
            block = model.load_composition(folder, set_active=True)
            assert block == (ah.Stack("a", "b") if kind == "stack" else ah.Fuse("a", "b", style="adapters"))
            assert (ours(arch, model) - next(theirs)).abs().max().item() < ATOL, (arch, kind)


def test_our_recipe_saves_as_a_setup_adapters_loads(saved_by_adapters, tmp_path):
    jobs, expected = [], []
    for arch, (base, folders) in saved_by_adapters.items():
        model = ah.AdapterModel(build(arch))
        model.load_composition(folders["fuse"])
        for kind, block in (("stack", ah.Stack("b", "a")), ("fuse", ah.Fuse("a", "b", style="adapters"))):
            folder = model.save_composition(tmp_path / f"{arch}-{kind}", block, format="adapters")
            written = json.loads((folder / "adapter_setup.json").read_text())
            assert written["adapter_setup"]["type"] == block.__class__.__name__
            model.set_active(block)
            expected.append(ours(arch, model))
            jobs.append((base, ARCHS[arch], folder))
    for (_, _, folder), theirs, mine in zip(jobs, logits_of_setup(jobs, tmp_path), expected, strict=True):
        assert (mine - theirs).abs().max().item() < ATOL, folder.name


def test_setups_we_cannot_map_are_refused_and_leave_the_model_as_it_was(saved_by_adapters, tmp_path):
    _, folders = saved_by_adapters["bert-seqcls"]
    for change, message in ((lambda s: s["adapter_setup"].update(type="Parallel"), "Parallel block has no"),
                            (lambda s: s["adapter_setup"]["children"].append({"type": "single", "children": ["c"]}),
                             "names 'c'")):
        folder = tmp_path / f"edited-{len(message)}"
        shutil.copytree(folders["stack"], folder)
        setup = json.loads((folder / "adapter_setup.json").read_text())
        change(setup)
        (folder / "adapter_setup.json").write_text(json.dumps(setup))
        model = ah.AdapterModel(build("bert-seqcls"))
        snap = model_snapshot(model)
        with pytest.raises(InvalidAdapterError, match=message):
            model.load_composition(folder)
        assert_model_unchanged(model, snap)
