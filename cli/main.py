"""The ``adapterhub`` command: the root group only wires one group or command per noun."""

from __future__ import annotations

import click

from adapterhub import __version__
from adapterhub.cli.adapters import pull, push, search, show, versions, yank
from adapterhub.cli.admin import admin
from adapterhub.cli.alias import alias
from adapterhub.cli.auth import login, logout, whoami
from adapterhub.cli.base import base
from adapterhub.cli.cache import cache
from adapterhub.cli.demo import demo
from adapterhub.cli.errors import HubGroup
from adapterhub.cli.evaluate import evaluate
from adapterhub.cli.namespace import namespace
from adapterhub.cli.rollout import rollout
from adapterhub.cli.seed import seed
from adapterhub.cli.serve_model import serve_model
from adapterhub.cli.server import serve, up
from adapterhub.cli.token import token
from adapterhub.cli.train import train
from adapterhub.cli.ui import ui
from adapterhub.cli.user import user

EPILOG = """\b
Examples:
  adapterhub up                                   # local registry on http://127.0.0.1:8000
  adapterhub namespace create acme                # where acme/... adapters live
  adapterhub push out/ acme/sentiment --version 1.0.0 --alias stable
  adapterhub search sentiment --method lora
  adapterhub pull acme/sentiment:stable

\b
Settings: flags > ADAPTERHUB_URL, ADAPTERHUB_TOKEN, ADAPTERHUB_HOME, ADAPTERHUB_OFFLINE=1 > defaults.
ADAPTERHUB_DEBUG=1 shows tracebacks.

\b
Shell completion (add to your shell's rc file):
  bash: eval "$(_ADAPTERHUB_COMPLETE=bash_source adapterhub)"
  zsh:  eval "$(_ADAPTERHUB_COMPLETE=zsh_source adapterhub)"
  fish: _ADAPTERHUB_COMPLETE=fish_source adapterhub | source
"""


@click.group(cls=HubGroup, epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--url", metavar="URL", help="Registry URL (default: ADAPTERHUB_URL, else http://127.0.0.1:8000).")
@click.version_option(__version__, prog_name="adapterhub")
def cli(url: str | None) -> None:
    """adapterhub: push, find, pull and serve parameter-efficient adapters."""


COMMANDS = [up, demo, seed, serve, base, login, logout, whoami, namespace, user, token, push, pull, search, show, versions,
            yank, alias, rollout, serve_model, cache, train, evaluate, ui, admin]
for command in COMMANDS:
    cli.add_command(command)
