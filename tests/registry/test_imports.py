"""The server starts without torch or the engine (DESIGN.md: who may import whom)."""

from __future__ import annotations

import subprocess
import sys


def test_server_never_imports_torch_or_compose(tmp_path):
    code = (
        "import sys\n"
        "from adapterhub.registry.server import Settings, create_app\n"
        f"create_app(Settings.from_env({{'ADAPTERHUB_HOME': {str(tmp_path)!r}}}))\n"
        "bad = sorted(m for m in sys.modules if m == 'torch' or m.startswith(('torch.', 'adapterhub.compose')))\n"
        "print(bad)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
