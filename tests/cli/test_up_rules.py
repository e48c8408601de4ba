"""What ``adapterhub up`` decides before and after it starts its children, without starting them:
which admin token it gives the registry, and when it prints the UI's URL."""

from __future__ import annotations

import subprocess
import sys

from click.testing import CliRunner

from adapterhub.cli.main import cli
from adapterhub.cli.server import admin_token
from adapterhub.cli.ui import announce_when_answering
from tests.client.support import range_server


def test_the_admin_token_is_the_environments_when_set_else_one_kept_in_home(tmp_path):
    assert admin_token(tmp_path, {"ADAPTERHUB_ADMIN_TOKEN": "from-env"}) == ("from-env", "env")
    assert not (tmp_path / "admin_token").exists()  # nothing written for a token the environment holds
    made, source = admin_token(tmp_path, {})
    assert source == "new" and made.startswith("ah_admin_")
    assert oct((tmp_path / "admin_token").stat().st_mode & 0o777) == "0o600"
    assert admin_token(tmp_path, {}) == (made, "file")
    assert admin_token(tmp_path, {"ADAPTERHUB_ADMIN_TOKEN": "from-env"}) == ("from-env", "env")  # env first, always


def test_up_and_serve_help_state_the_one_admin_token_rule():
    for command in ("up", "serve"):
        text = " ".join(CliRunner().invoke(cli, [command, "--help"]).output.split())
        assert "The admin token is ADAPTERHUB_ADMIN_TOKEN when it is set" in text, command


def _sleeper() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])


def test_the_ui_url_is_printed_once_something_answers_there(capsys):
    proc = _sleeper()
    try:
        with range_server({}) as srv:  # answers every path (404 counts: it is listening)
            announce_when_answering(srv.url, proc, "  (registry x)", timeout=30)
    finally:
        proc.kill()
        proc.wait()
    assert capsys.readouterr().err == f"UI: {srv.url}  (registry x)\n"


def test_a_ui_that_exits_before_answering_prints_no_url(capsys):
    proc = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    announce_when_answering("http://127.0.0.1:9", proc, timeout=30)
    assert capsys.readouterr().err == "" and proc.returncode == 3


def test_a_ui_still_silent_at_the_deadline_gets_a_note_not_a_url(capsys):
    proc = _sleeper()
    try:
        announce_when_answering("http://127.0.0.1:9", proc, timeout=1)
    finally:
        proc.kill()
        proc.wait()
    assert capsys.readouterr().err == "the UI has not answered at http://127.0.0.1:9 after 1s; it may still be starting\n"
