"""``python -m adapterhub.cli`` = the ``adapterhub`` console script."""

from adapterhub.cli.main import cli

if __name__ == "__main__":
    cli(prog_name="adapterhub")
