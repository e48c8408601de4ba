"""Running the ``adapterhub`` command in-process (click's runner) and reading its answer."""

from __future__ import annotations

import json

from click.testing import CliRunner, Result

from adapterhub.cli.main import cli


def run(*args, env: dict | None = None, **kwargs) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args], env=env, **kwargs)


def ok(*args, **kwargs) -> Result:
    """``run``, asserting that the command succeeded (its output shown when it did not)."""
    result = run(*args, **kwargs)
    assert result.exit_code == 0, result.output
    return result


def js(*args, **kwargs):
    """The ``--json`` answer of a command that must succeed."""
    return json.loads(ok(*args, "--json", **kwargs).stdout)
