from adapterhub.compose.tuners.prompt.config import PromptTuningConfig
from adapterhub.compose.tuners.prompt.layer import PromptEmbedding

__all__ = ["PromptTuningConfig", "PromptEmbedding"]
