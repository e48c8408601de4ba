from adapterhub.compose.tuners.ia3.config import IA3Config
from adapterhub.compose.tuners.ia3.layer import IA3Layer

__all__ = ["IA3Config", "IA3Layer"]
