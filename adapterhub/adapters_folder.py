"""AdapterHub's ``adapters`` folder format, the files and the rules of it that every room needs: what
``adapters``' ``save_adapter(..., use_safetensors=True)`` writes, and how to tell such a folder from
ours and PEFT's. Its ``adapter_config.json`` shares our file name and nests its options under
``config``; the engine maps it onto ours and back (``compose/folder/adapters_format.py``), the client
and the server accept and serve it as it is. Standard library only.

>>> is_adapters_config({"config": {"reduction_factor": 16}, "version": "adapters.1.3.0"})
True
>>> is_adapters_config({"peft_type": "LORA", "r": 8})
False
"""

from __future__ import annotations

from typing import Any

WEIGHTS_FILE = "adapter.safetensors"
PICKLE_WEIGHTS_FILE = "pytorch_adapter.bin"  # refused unopened, with the command that converts it
HEAD_CONFIG_FILE = "head_config.json"
HEAD_WEIGHTS_FILE = "model_head.safetensors"
FUSION_CONFIG_FILE = "adapter_fusion_config.json"
FUSION_WEIGHTS_FILE = "model_adapter_fusion.safetensors"
SETUP_FILE = "adapter_setup.json"
LIBRARY_NAMES = ("adapter-transformers", "adapters")  # the Hub's library_name for them
WRITTEN_VERSION = "adapters.1.3.0"  # the ``adapters`` release whose files we write and test against

# The one-line conversion for a pickle-only folder, run where ``adapters`` (and torch) are installed:
# it loads the pickle there, by the user's own choice, and writes the safetensors file we read.
CONVERT_COMMAND = ("python -c \"import torch, safetensors.torch as s; "
                   "s.save_file(torch.load('pytorch_adapter.bin', weights_only=True), 'adapter.safetensors')\"")


def is_adapters_config(config: dict[str, Any]) -> bool:
    """True for an ``adapter_config.json`` written by ``adapters`` (its options nest under ``config``),
    False for ours and PEFT's (flat, with ``peft_type``)."""
    return "peft_type" not in config and (isinstance(config.get("config"), dict)
                                          or str(config.get("version", "")).startswith("adapters."))
