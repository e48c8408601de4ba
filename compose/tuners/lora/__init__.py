from adapterhub.compose.tuners.lora.config import LoRAConfig
from adapterhub.compose.tuners.lora.layer import LoRALayer

__all__ = ["LoRAConfig", "LoRALayer"]
