"""``adapterhub seed``: publish the seed adapters into a registry."""

from __future__ import annotations

from pathlib import Path

import click

from adapterhub.cli.context import get_hub


@click.command()
@click.option("--from", "root", type=click.Path(exists=True, file_okay=False, path_type=Path),
              default=Path("seed_adapters"), show_default=True, help="Folder holding one folder per seed.")
def seed(root: Path) -> None:
    """Push every seed adapter as adapterhub/<name>@1.0.0 (alias stable) with its metrics.

    Needs an admin or a token with write scope on the `adapterhub` namespace. Versions already
    there are skipped.

    \b
    Example:
      adapterhub seed --from seed_adapters
    """
    from adapterhub.registry.seeding import seed_registry

    pushed = seed_registry(get_hub(), root, say=click.echo)
    click.echo(f"{len(pushed)} seed adapter(s) published" if pushed else "seed adapters already published")
