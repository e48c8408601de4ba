"""``adapterhub rollout …`` and the `Hub` rollout methods through CliRunner against a real registry."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from adapterhub.cli.main import cli
from adapterhub.errors import InvalidReferenceError, RegistryError
from adapterhub.registry.client import Hub
from adapterhub.registry.server.canary import arm_for
from tests.client.support import make_adapter

HEALTHY = [{"arm": "stable", "requests": 1000, "errors": 10, "latency_sum": 100.0, "latency_sq_sum": 11.0},
           {"arm": "canary", "requests": 60, "errors": 0, "latency_sum": 6.0, "latency_sq_sum": 0.7}]


def run(*args, **kwargs):
    return CliRunner().invoke(cli, [str(a) for a in args], **kwargs)


def ok(*args, **kwargs):
    result = run(*args, **kwargs)
    assert result.exit_code == 0, result.output
    return result


def js(*args):
    return json.loads(ok(*args, "--json").stdout)


@pytest.fixture
def svc(online, tmp_path, request):
    """``acme/<test name>`` with 1.0.0 on ``prod`` and 1.1.0 published."""
    ref = f"acme/{request.node.name.replace('_', '-')[:60]}"
    ok("push", make_adapter(tmp_path / "a", seed=1), ref, "--version", "1.0.0", "--alias", "prod")
    ok("push", make_adapter(tmp_path / "b", seed=2), ref, "--version", "1.1.0")
    return ref


def test_start_step_status_promote(svc):
    out = js("rollout", "start", svc, "--alias", "prod", "--canary", "1.1.0", "--weight", 10)
    assert (out["state"], out["weight"], out["stable_version"], out["canary_version"]) == (
        "active", 10, "1.0.0", "1.1.0")
    assert js("rollout", "step", svc, "--alias", "prod", "--weight", 50)["weight"] == 50
    shown = ok("rollout", "status", svc, "--alias", "prod")
    for text in ("active", "1.0.0 (stable) -> 1.1.0 (canary)", "stable", "canary", "requests", "err %", "latency s"):
        assert text in shown.stdout
    assert js("rollout", "pause", f"{svc}:prod")["state"] == "paused"
    result = ok("rollout", "promote", svc, "--alias", "prod", "--reason", "all good")
    assert f"rollout {out['id']}: promoted (prod -> 1.1.0)" in result.stderr
    assert js("alias", "ls", svc) == {"prod": "1.1.0"}
    status = js("rollout", "status", svc, "--alias", "prod")
    assert (status["state"], status["reason"]) == ("promoted", "all good")


def test_rollback_and_schedule(svc):
    out = js("rollout", "start", svc, "--alias", "prod", "--canary", "1.1.0", "--weight", 5,
             "--schedule", "5,25,50,100", "--min-duration", 0, "--min-requests", 50)
    assert out["schedule"] == {"steps": [5, 25, 50, 100], "min_duration_s": 0, "min_requests": 50}
    assert out["next_step"] == 25
    result = ok("rollout", "rollback", svc, "--alias", "prod")
    assert result.stderr == f"rollout {out['id']}: rolled_back (prod -> 1.0.0)\n"
    assert js("alias", "ls", svc) == {"prod": "1.0.0"}


def test_refusals_are_one_line(svc):
    ok("rollout", "start", svc, "--alias", "prod", "--canary", "1.1.0", "--weight", 10)
    result = run("rollout", "start", svc, "--alias", "prod", "--canary", "1.1.0", "--weight", 20)
    assert result.exit_code == 1 and result.output.count("\n") == 1
    assert result.output.startswith("Error: the registry refused: alias 'prod' already has an active rollout (")
    assert result.output.endswith("[RolloutExists]\n")
    result = run("rollout", "step", svc, "--alias", "prod", "--weight", 150)
    assert result.exit_code == 2 and "150.0 is not in the range 0<=x<=100" in result.output
    result = run("rollout", "status", svc)
    assert (result.exit_code, result.output) == (
        1, f"Error: which alias does the rollout move? e.g. {svc}:prod or --alias prod\n")
    result = run("rollout", "status", svc, "--alias", "staging")
    assert (result.exit_code, result.output) == (1, "Error: not found: no rollout on alias 'staging'\n")
    result = run("rollout", "start", svc, "--alias", "prod", "--canary", "1.1.0", "--weight", 1, "--schedule", "5,x")
    assert result.exit_code == 2 and "expected comma-separated weights such as 5,25,50,100, got '5,x'" in result.output


def test_hub_rollout_methods_and_canary_aware_resolve(svc, online):
    with Hub() as hub:
        out = hub.rollout_start(svc, "prod", "1.1.0", 30, [30, 60, 100], min_duration_s=0, min_requests=50)
        rid = out["id"]
        assert hub.resolve(f"{svc}:prod").arm == "stable"
        for key in (f"tenant-{i}" for i in range(20)):
            res = hub.resolve(f"{svc}:prod", key=key)
            assert (res.arm, res.rollout_id) == (arm_for(rid, 30, key), rid)
            assert res.version == ("1.1.0" if res.arm == "canary" else "1.0.0")
        assert hub.rollout_status(f"{svc}:prod")["id"] == rid
        assert hub.report_outcomes(f"{svc}:prod", HEALTHY, rollout_id=rid)["weight"] == 60
        assert hub.report_outcomes(svc, HEALTHY, alias="prod")["state"] == "promoted"
        assert hub.resolve(f"{svc}:prod", key="tenant-1").to_dict() | {"commit": None} == {
            "namespace": "acme", "name": svc.split("/")[1], "version": "1.1.0", "commit": None, "arm": "stable",
            "rollout_id": None}
        assert [r["state"] for r in hub.rollouts(svc, alias="prod")] == ["promoted"]
        with pytest.raises(RegistryError) as err:
            hub.rollout_rollback(svc, "prod")
        assert (err.value.status, err.value.code) == (409, "RolloutNotActive")
        with pytest.raises(InvalidReferenceError, match="a rollout moves an alias"):
            hub.rollout_status(f"{svc}@1.0.0")
        with pytest.raises(InvalidReferenceError, match="names alias prod but canary was given"):
            hub.rollout_pause(f"{svc}:prod", "canary")


ROLLOUT_COMMANDS = [["rollout"], *[["rollout", c] for c in
                                   ("start", "step", "pause", "resume", "promote", "rollback", "status")]]


@pytest.mark.parametrize("command", ROLLOUT_COMMANDS, ids=" ".join)
def test_every_rollout_command_has_help_with_an_example_and_json(command):
    result = run(*command, "--help")
    assert result.exit_code == 0, result.output
    assert "Example" in result.output and "adapterhub rollout " in result.output
    assert len(command) == 1 or "--json" in result.output
