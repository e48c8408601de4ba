"""What the registry refuses, in one leaf module that the client and the server both import.

Why here: the client checks a folder before it uploads a single byte, so a push the server would
refuse changes nothing; that only holds if both sides read the same table. No httpx, no server,
no torch.

>>> "adapter_model.bin".endswith(PICKLE_SUFFIXES)
True
"""

from __future__ import annotations

# Weights in these formats are pickles: loading one can run arbitrary code, so none is accepted.
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")

# An adapter folder holds a handful of files; thousands mean a wrong folder (a dataset, a venv).
MAX_FILES_PER_VERSION = 1000
