"""``adapterhub seed``: publish the seed adapters into a registry."""

from __future__ import annotations

from pathlib import Path

import click

from adapterhub.cli.context import get_hub


@click.command()
@click.option("--from", "root", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Folder holding one folder per seed.  [default: the seeds this installation ships]")
def seed(root: Path | None) -> None:
    """Push every seed adapter as adapterhub/<name>@1.0.0 (alias stable) with its metrics.

    Needs an admin or a token with write scope on the `adapterhub` namespace. Versions already
    there are skipped.

    \b
    Example:
      adapterhub seed --from seed_adapters
    """
    from adapterhub.cli.server import seed_root
    from adapterhub.registry.seeding import seed_registry

    root = root or seed_root()
    if root is None:
        raise click.UsageError("this installation ships no seed adapters; pass --from DIR")
    pushed = seed_registry(get_hub(), root, say=click.echo)
    click.echo(f"{len(pushed)} seed adapter(s) published" if pushed else "seed adapters already published")
