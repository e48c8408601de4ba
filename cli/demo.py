"""``adapterhub demo``: the engine's one-minute tour (no download, a small random model)."""

from __future__ import annotations

import click


@click.command()
@click.option("--steps", default=30, show_default=True, type=click.IntRange(1, 1000), help="Training steps.")
def demo(steps: int) -> None:
    """Attach a LoRA to a small random LLaMA, train it, save, reload and merge it.

    \b
    Example:
      adapterhub demo --steps 30
    """
    from adapterhub.compose.workflows.demo import run_demo

    click.echo("adapterhub engine demo (a small random LLaMA; the registry starts next with `adapterhub up`)")
    run_demo(lambda line: click.echo(f"  {line}"), steps=steps)
