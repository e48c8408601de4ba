"""The CLI: every catalogued bad input exits non-zero with one exact line on stderr, nothing on
stdout, and changes nothing in the registry or in ``ADAPTERHUB_HOME`` (no cache, no token file).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest
from click.testing import CliRunner

from adapterhub.cli.main import cli
from tests.bad_inputs.support import (
    ALIAS_RULE,
    AUTH_HINT,
    LONG_NAME,
    LOOKALIKE,
    NAME_RULE,
    PICKLE_HINT,
    SEMVER_RULE,
    TRIPWIRE,
    assert_only_orphans_added,
    fill,
)
from tests.helpers.snapshots import assert_still, folder_state


@dataclass(frozen=True)
class CliCase:
    """``args`` (a ``{folder key}`` becomes its path) must exit ``exit_code`` printing exactly
    ``Error: <message>`` (a pattern, if ``regex``); ``orphans`` as for `Hub` (see test_hub_client)."""

    id: str
    args: tuple[str, ...]
    message: str
    who: str | None = "write"
    exit_code: int = 1
    orphans: bool = False
    regex: bool = False


CASES = [
    # -- uploads -------------------------------------------------------------------------
    CliCase("symlink in the folder", ("push", "{symlink}", "alice/target", "--version", "2.0.0"),
            "invalid adapter: refusing to push {symlink}/link.json: symlinks are not allowed in an adapter folder"),
    CliCase("pickle .bin", ("push", "{pickle_bin}", "alice/target", "--version", "2.0.0"),
            "invalid adapter: refusing to push {pickle_bin}/adapter_model.bin: " + PICKLE_HINT),
    CliCase("control character in a name", ("push", "{control}", "alice/target", "--version", "2.0.0"),
            "invalid adapter: refusing to push '{control}/bad\\x1bname.json': control characters are not allowed"),
    CliCase("10,000 files", ("push", "{many}", "alice/target", "--version", "2.0.0"),
            "invalid adapter: refusing to push {many}: it holds more than 1000 files, the most a version may hold"),
    CliCase("0-byte weights", ("push", "{zero_weights}", "alice/target", "--version", "2.0.0"),
            "the registry refused: adapter_model.safetensors: 0 bytes is too short for a safetensors file "
            "[BadSafetensors]", orphans=True),
    CliCase("folder that does not exist", ("push", "{good}/nope", "alice/target", "--version", "2.0.0"),
            "Invalid value for 'FOLDER': Directory '{good}/nope' does not exist.", exit_code=2),
    # -- adapter_config.json -------------------------------------------------------------
    CliCase("config not json", ("push", "{config_not_json}", "alice/target", "--version", "2.0.0"),
            "invalid adapter: {config_not_json}/adapter_config.json is not valid JSON: Expecting property name "
            "enclosed in double quotes: line 1 column 2 (char 1)"),
    CliCase("r = 0", ("push", "{r0}", "alice/target", "--version", "2.0.0"),
            "the registry refused: adapter_config.json: r must be a positive integer, got 0 [InvalidManifest]",
            orphans=True),
    # -- names and references ------------------------------------------------------------
    CliCase("upper case", ("push", "{good}", "Alice/target", "--version", "2.0.0"),
            f"invalid namespace 'Alice': {NAME_RULE}"),
    CliCase("look-alike", ("pull", f"alice/{LOOKALIKE}"), f"invalid adapter name {LOOKALIKE!r}: {NAME_RULE}"),
    CliCase("leading dot", ("show", ".alice/target"), f"invalid namespace '.alice': {NAME_RULE}"),
    CliCase("300 characters", ("versions", f"alice/{LONG_NAME}"), f"invalid adapter name {LONG_NAME!r}: {NAME_RULE}"),
    CliCase("@not-semver", ("pull", "alice/target@not-semver"), f"invalid version 'not-semver': {SEMVER_RULE}"),
    CliCase("--version not-semver", ("push", "{good}", "alice/target", "--version", "1.0"),
            f"invalid version '1.0': {SEMVER_RULE}"),
    CliCase(":alias/with/slash", ("pull", "alice/target:alias/with/slash"),
            f"invalid alias 'alias/with/slash': {ALIAS_RULE}"),
    CliCase("--alias upper case", ("push", "{good}", "alice/target", "--version", "2.0.0", "--alias", "Stable"),
            f"invalid alias 'Stable': {ALIAS_RULE}"),
    CliCase("unknown adapter", ("pull", "alice/targex"),
            "not found: adapter alice/targex not found (or you may not read it) (did you mean alice/target?)"),
    CliCase("unknown version", ("show", "alice/target@9.9.9"), "not found: version '9.9.9' not found"),
    # -- auth ----------------------------------------------------------------------------
    CliCase("no token", ("push", "{good}", "alice/target", "--version", "2.0.0"),
            "not authorised: this call needs a token (Authorization: Bearer <token>) "
            "(run `adapterhub login` or set ADAPTERHUB_TOKEN)", who=None),
    CliCase("malformed token", ("whoami",), "not authorised: invalid, expired or revoked token " + AUTH_HINT,
            who="not a token"),
    CliCase("revoked token", ("search", "target"),
            r"not authorised: token {id:revoked} was revoked at \d{{4}}-\d\d-\d\d \d\d:\d\d UTC " + re.escape(AUTH_HINT),
            who="revoked", regex=True),
    CliCase("expired token", ("pull", "alice/target"),
            "not authorised: token {id:expired} expired at 2000-01-01 00:00 UTC " + AUTH_HINT, who="expired"),
    CliCase("read-only token pushes", ("push", "{good}", "alice/target", "--version", "2.0.0"),
            "not authorised: uploading blobs needs a write scope " + AUTH_HINT, who="read"),
    CliCase("private adapter", ("pull", "secret/hidden"),
            "not found: adapter secret/hidden not found (or you may not read it)", who=None),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_cli_refuses(world, folders, isolated_home, case):
    token = world.tokens.get(case.who, case.who) if case.who else None
    env = {"ADAPTERHUB_URL": world.server.url, "ADAPTERHUB_TOKEN": token}
    args = [fill(a, world, folders) for a in case.args]
    message = fill(case.message, world, folders)

    def state() -> dict:
        return {**world.state(), "cache": folder_state(isolated_home)}

    before = state()
    result = CliRunner().invoke(cli, args, env=env)
    assert (result.exit_code, result.stdout) == (case.exit_code, ""), result.output
    if case.exit_code == 2:  # click's own usage error: a usage line, then the error
        assert result.stderr.splitlines()[-1] == f"Error: {message}"
    elif case.regex:
        assert re.fullmatch(f"Error: {message}\n", result.stderr), result.stderr
    else:
        assert result.stderr == f"Error: {message}\n"
    if case.orphans:
        assert_only_orphans_added(before, state())
    else:
        assert_still(before, state)
    assert not TRIPWIRE.exists(), "a pickle was unpickled"
