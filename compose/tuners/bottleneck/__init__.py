from adapterhub.compose.tuners.bottleneck.config import BottleneckConfig
from adapterhub.compose.tuners.bottleneck.layer import BottleneckLayer

__all__ = ["BottleneckConfig", "BottleneckLayer"]
