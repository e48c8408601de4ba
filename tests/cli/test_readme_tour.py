"""The README's CLI tour, read from README.md and run verbatim against a fresh registry, so that the
README cannot drift from what the commands do. A block takes part when the line before it is
`MARKER`; the fast test checks that every line of it parses as a real command."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from adapterhub.cli.main import cli
from adapterhub.registry import config
from adapterhub.registry.client import Hub
from tests.client.support import make_adapter
from tests.helpers.live_server import run_server

README = Path(__file__).resolve().parents[2] / "README.md"
MARKER = "<!-- tour: tests/cli/test_readme_tour.py runs this block verbatim -->"


def tour_blocks() -> list[str]:
    """The shell blocks right after a `MARKER` line, as written."""
    lines = README.read_text(encoding="utf-8").splitlines()
    blocks = []
    for i, line in enumerate(lines):
        if line.strip() == MARKER:
            assert lines[i + 1].strip() == "```sh", f"README.md line {i + 2}: the marked block must be ```sh"
            end = lines.index("```", i + 2)
            blocks.append("\n".join(lines[i + 2:end]) + "\n")
    return blocks


def tour_commands() -> list[list[str]]:
    return [shlex.split(line, comments=True) for block in tour_blocks() for line in block.splitlines()
            if shlex.split(line, comments=True)]


def test_the_tour_is_in_the_readme_and_every_line_is_a_real_command():
    commands = tour_commands()
    verbs = {" ".join(c[:3]) for c in commands}
    assert {"adapterhub namespace create", "adapterhub user create", "adapterhub token create",
            "adapterhub token list"} <= verbs, verbs
    assert any(c[:2] == ["adapterhub", "push"] for c in commands)
    for command in commands:
        assert command[0] == "adapterhub", command
        result = CliRunner().invoke(cli, [*command[1:], "--help"])  # an unknown verb or option fails here
        assert result.exit_code == 0, (command, result.output)


@pytest.mark.slow
def test_the_readme_tour_runs_verbatim_on_a_fresh_hub(tmp_path):
    (tmp_path / "work" / "out").mkdir(parents=True)
    make_adapter(tmp_path / "work" / "out" / "sent")  # what the engine tour saved (a LoRA folder)
    with run_server(tmp_path / "registry") as srv:
        config.store_token(srv.admin_token)  # what `adapterhub up` does on a first start
        env = {k: v for k, v in os.environ.items() if not k.startswith("ADAPTERHUB_")}
        env.update(ADAPTERHUB_URL=srv.url, ADAPTERHUB_HOME=str(config.home()), COLUMNS="200",  # tables unwrapped
                   PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}")
        for block in tour_blocks():
            done = subprocess.run(["bash", "-euo", "pipefail", "-x"], input=block, text=True, capture_output=True,
                                  cwd=tmp_path / "work", env=env, timeout=300)
            assert done.returncode == 0, f"the README tour failed:\n{done.stderr}\n{done.stdout}"
        assert "acme/sentiment" in done.stdout and "laptop" in done.stdout
        with Hub(srv.url, srv.admin_token, cache_dir=tmp_path / "cache") as hub:
            assert hub.aliases("acme/sentiment") == {"stable": "1.1.0"}
            assert [(t["name"], t["scope"], t["namespaces"]) for t in hub.list_tokens("alice")] == [
                ("laptop", "write", ["acme"])]
