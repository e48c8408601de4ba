"""The client and the CLI stay light: no torch, no server code, and `adapterhub.Hub` is the client."""

from __future__ import annotations

import subprocess
import sys


def test_client_and_cli_import_neither_torch_nor_the_server():
    code = (
        "import sys, adapterhub, adapterhub.cli.main\n"
        "assert adapterhub.Hub is __import__('adapterhub.registry.client', fromlist=['Hub']).Hub\n"
        "bad = sorted(m for m in sys.modules if m == 'torch' or m.startswith(('adapterhub.registry.server',"
        " 'adapterhub.compose', 'fastapi', 'sqlmodel')))\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
