"""``adapterhub ui``: its help, the ``streamlit run`` line it builds, and the port it picks."""

from __future__ import annotations

import socket

from click.testing import CliRunner

from adapterhub.cli.main import cli
from adapterhub.cli.ui import entry_script, pick_port, ui_command


def test_ui_help_shows_an_example_and_the_registry_option():
    result = CliRunner().invoke(cli, ["ui", "--help"])
    assert result.exit_code == 0, result.output
    assert "adapterhub ui --port 8501 --registry http://127.0.0.1:8000" in result.output
    assert "--registry URL" in result.output


def test_ui_runs_the_entry_script_headless_without_usage_stats():
    cmd = ui_command("127.0.0.1", 8765)
    assert cmd[1:4] == ["-m", "streamlit", "run"] and cmd[4] == str(entry_script())
    assert entry_script().name == "app.py" and entry_script().is_file()
    flags = dict(zip(cmd[5::2], cmd[6::2], strict=True))
    assert flags["--server.headless"] == "true" and flags["--browser.gatherUsageStats"] == "false"
    assert flags["--server.port"] == "8765" and flags["--server.address"] == "127.0.0.1"


def test_pick_port_keeps_a_free_port_and_moves_off_a_taken_one():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        taken = s.getsockname()[1]
        assert pick_port(taken) != taken
    assert pick_port(taken) == taken
