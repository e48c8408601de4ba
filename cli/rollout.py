"""``adapterhub rollout start | step | pause | resume | promote | rollback | status``: canary rollouts.

A rollout moves an alias (``prod``) from its current version to a canary by weight, sticky per
key; the registry steps it up along ``--schedule`` while the canary stays healthy and rolls it
back on an error, latency or quality regression.
"""

from __future__ import annotations

import click
from rich.console import Group

from adapterhub.cli.context import get_hub
from adapterhub.cli.output import emit, json_option, kv_table, note, short_time, table

alias_option = click.option("--alias", "alias_name", metavar="ALIAS",
                            help="The alias the rollout moves (or give REF as ns/name:ALIAS).")


@click.group()
def rollout() -> None:
    """Move an alias to a new version by traffic share, promote or roll back on evidence.

    \b
    Example:
      adapterhub rollout start acme/support --alias prod --canary 1.1.0 --weight 10 --schedule 5,25,50,100
      adapterhub rollout status acme/support --alias prod
    """


def _steps(_ctx, _param, value: str | None) -> list[float] | None:
    if not value:
        return None
    try:
        return [float(s) for s in value.split(",") if s.strip()]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated weights such as 5,25,50,100, got {value!r}") from None


def _pct(x: float | None) -> str:
    return "" if x is None else f"{100 * x:.2f}%"


def _num(x: float | None) -> str:
    return "" if x is None else f"{x:.4g}"


def render(r: dict) -> Group:
    """The rollout in one key/value block and one row per arm."""
    head = {"rollout": r["id"], "alias": r["alias"], "state": r["state"],
            "weight": f"{r['weight']:g}% canary" + (f" (next {r['next_step']:g}%)" if r.get("next_step") else ""),
            "versions": f"{r['stable_version']} (stable) -> {r['canary_version']} (canary)",
            "reason": r["reason"], "error p-value": _num(r.get("error_p_value")),
            "updated": f"{short_time(r['updated_at'])} by {r['updated_by']}"}
    rows = [{"arm": arm, **figures} for arm, figures in r["arms"].items()]
    arms = table(rows, [("arm", lambda a: a["arm"]), ("version", lambda a: a["version"]),
                        ("requests", lambda a: a["requests"]), ("errors", lambda a: a["errors"]),
                        ("err %", lambda a: _pct(a["error_rate"])),
                        ("latency s", lambda a: _num(a["latency_mean"])),
                        ("sd s", lambda a: _num(a["latency_std"])),
                        ("quality", lambda a: _num(a["quality_mean"]))])
    return Group(kv_table(head), "", arms)


def _show(out: dict, as_json: bool, message: str) -> None:
    note(message)
    emit(out, as_json, render)


@rollout.command()
@click.argument("ref")
@alias_option
@click.option("--canary", "canary_version", required=True, metavar="VERSION", help="The version to roll out.")
@click.option("--weight", type=click.FloatRange(0, 100), required=True, help="Percent of keys on the canary.")
@click.option("--schedule", callback=_steps, metavar="W1,W2,...", help="Automatic steps, e.g. 5,25,50,100.")
@click.option("--min-duration", type=click.FloatRange(min=0), help="Seconds each step must last (default 600).")
@click.option("--min-requests", type=click.IntRange(min=0), help="Canary requests each step must see (default 100).")
@json_option
def start(ref: str, alias_name: str | None, canary_version: str, weight: float, schedule: list[float] | None,
          min_duration: float | None, min_requests: int | None, as_json: bool) -> None:
    """Start rolling REF's alias out to the --canary version.

    \b
    Example:
      adapterhub rollout start acme/support --alias prod --canary 1.1.0 --weight 10 --schedule 5,25,50,100
    """
    out = get_hub().rollout_start(ref, alias_name, canary_version, weight, schedule,
                                  min_duration_s=min_duration, min_requests=min_requests)
    _show(out, as_json, f"rollout {out['id']}: {out['alias']} {out['stable_version']} -> {out['canary_version']} "
                        f"at {out['weight']:g}%")


@rollout.command()
@click.argument("ref")
@alias_option
@click.option("--weight", type=click.FloatRange(0, 100), required=True, help="Percent of keys on the canary.")
@json_option
def step(ref: str, alias_name: str | None, weight: float, as_json: bool) -> None:
    """Set the canary weight of the rollout by hand.

    \b
    Example:
      adapterhub rollout step acme/support --alias prod --weight 50
    """
    out = get_hub().rollout_step(ref, alias_name, weight)
    _show(out, as_json, f"rollout {out['id']}: {out['weight']:g}% canary ({out['state']})")


def _action(name: str, summary: str, example: str):
    @click.argument("ref")
    @alias_option
    @click.option("--reason", default="", help="Recorded in the audit log.")
    @json_option
    def command(ref: str, alias_name: str | None, reason: str, as_json: bool) -> None:
        out = getattr(get_hub(), f"rollout_{name}")(ref, alias_name, reason=reason)
        _show(out, as_json, f"rollout {out['id']}: {out['state']} ({out['alias']} -> "
                            f"{out['canary_version'] if out['state'] == 'promoted' else out['stable_version']})")

    command.__doc__ = f"{summary}\n\n\b\nExample:\n  {example}\n"
    return rollout.command(name)(command)


pause = _action("pause", "Hold the split where it is (no automatic step-up).",
                "adapterhub rollout pause acme/support --alias prod")
resume = _action("resume", "Let a paused rollout step up again.", "adapterhub rollout resume acme/support --alias prod")
promote = _action("promote", "Point the alias at the canary version and end the rollout.",
                  "adapterhub rollout promote acme/support --alias prod")
rollback = _action("rollback", "Send every key back to the stable version and end the rollout.",
                   "adapterhub rollout rollback acme/support --alias prod --reason 'p99 up'")


@rollout.command()
@click.argument("ref")
@alias_option
@json_option
def status(ref: str, alias_name: str | None, as_json: bool) -> None:
    """Show the alias's newest rollout with per-arm requests, errors, latency and quality.

    \b
    Example:
      adapterhub rollout status acme/support --alias prod --json
    """
    emit(get_hub().rollout_status(ref, alias_name), as_json, render)
