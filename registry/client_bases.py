"""The base-model half of the registry client: register a base (with its files, to mirror it), list, read.

Kept apart from ``client.py`` so that each file has one job; ``Hub`` inherits this mixin. Needs
``_request``, ``_hash_files`` and ``_upload`` from ``Hub``. The manifest is read here from the
model's own files (`adapterhub.base_manifest`: safetensors headers, no torch), so the registry
never loads a model.

>>> hub.register_base("path/to/SmolLM2", "HuggingFaceTB/SmolLM2-135M-Instruct", aliases=["smollm2-135m"], mirror=True)  # doctest: +SKIP
{'id': 'HuggingFaceTB/SmolLM2-135M-Instruct', 'aliases': ['smollm2-135m'], 'modules': 273, ...}
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import quote

from adapterhub import adapters_folder as af
from adapterhub.adapters_compat import adapters_incompatibility
from adapterhub.base_compat import incompatibility
from adapterhub.base_manifest import base_manifest, tensor_shapes
from adapterhub.errors import (
    AdapterNotFoundError,
    IncompatibleAdapterError,
    InvalidAdapterError,
    RegistryError,
)
from adapterhub.format import (
    CONFIG_FILE,
    MAX_FILES_PER_VERSION,
    WEIGHTS_FILE,
    check_safetensors_file,
    is_pickle_name,
    read_json_object,
)


def mirror_files(root: Path) -> list[Path]:
    """The files of a model folder worth serving: all but hidden ones and pickles (a folder from the
    Hub often holds ``pytorch_model.bin`` beside ``model.safetensors``; the mirror never serves one)."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if name.startswith(".") or is_pickle_name(name) or path.is_symlink() or not path.is_file():
                continue
            found.append(path)
    if len(found) > MAX_FILES_PER_VERSION:
        raise InvalidAdapterError(f"{root} holds {len(found)} files; a mirrored base may hold {MAX_FILES_PER_VERSION}")
    return found


class BasesMixin:
    """Base models (see ``registry/API.md``, "Base models"); mixed into ``Hub``."""

    def register_base(self, folder: str | Path, hub_id: str, aliases: Sequence[str] = (), *,
                      mirror: bool = False) -> dict:
        """Register (or re-register) the base in ``folder`` under its Hub id: admin only. With
        ``mirror`` its files are uploaded too (only those the registry lacks) and served under the id."""
        root = Path(folder)
        manifest = base_manifest(root)
        files: list[dict] = []
        if mirror:
            files = self._hash_files(root, mirror_files(root))
            missing = set(self._request("POST", "blobs/missing", json={"sha256": sorted({f["sha256"] for f in files})})
                          .json()["missing"])
            self._upload(root, [f for f in {f["sha256"]: f for f in files}.values() if f["sha256"] in missing])
        body = {"id": hub_id, "aliases": list(aliases), "manifest": manifest, "mirror": mirror, "files": files}
        return self._request("POST", "bases", json=body).json()

    def bases(self) -> list[dict]:
        return self._request("GET", "bases").json()

    def base(self, ref: str) -> dict:
        """One base by Hub id or alias, with its manifest."""
        return self._request("GET", f"bases/{quote(ref, safe='/')}").json()

    def _check_against_base(self, root: Path) -> None:
        """Refuse, before anything is uploaded, an adapter whose tensors do not fit its registered
        base: the registry's own gate (``registry/server/bases.py``), run here first so that a
        refused push writes nothing. A base the registry does not know is left to it (it warns).
        An ``adapters`` folder names its base by ``model_name`` and is judged by its own rules
        (`adapters_compat.adapters_incompatibility`: its weights, head and fusion files)."""
        config_path = root / CONFIG_FILE
        if not config_path.is_file() and (root / af.FUSION_CONFIG_FILE).is_file():
            config_path = root / af.FUSION_CONFIG_FILE  # a fusion folder: its config names the base
        if not config_path.is_file():
            return
        config = read_json_object(config_path)
        adapters = af.looks_like_adapters_config(config) or config_path.name == af.FUSION_CONFIG_FILE
        name = af.base_model_of(config) if adapters else config.get("base_model_name_or_path")
        if not isinstance(name, str) or not name or name.startswith(("/", ".")) or Path(name).exists():
            return
        try:
            base = self.base(name)
        except (AdapterNotFoundError, RegistryError):  # not registered (or a registry from before base models)
            return
        manifest = {**base.get("manifest", {}), "id": base["id"]}
        if adapters:
            shapes = {}
            for file in af.SAFETENSORS_FILES:
                if (root / file).is_file():
                    check_safetensors_file(root / file)
                    shapes[file] = tensor_shapes(root / file)
            problem = adapters_incompatibility(config, shapes, manifest)
        else:
            weights = root / WEIGHTS_FILE
            if weights.is_file():
                check_safetensors_file(weights)  # the format's rules first: a bad file names its problem
            tensors = tensor_shapes(weights) if weights.is_file() else {}
            problem = incompatibility(config, tensors, manifest)
        if problem:
            raise IncompatibleAdapterError(f"{root} does not fit its base {base['id']}: {problem}")
