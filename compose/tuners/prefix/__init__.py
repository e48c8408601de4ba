from adapterhub.compose.tuners.prefix.config import PrefixTuningConfig
from adapterhub.compose.tuners.prefix.layer import PrefixEncoder

__all__ = ["PrefixTuningConfig", "PrefixEncoder"]
