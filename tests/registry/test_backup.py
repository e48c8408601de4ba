"""`adapterhub admin backup | restore`: a registry built through the API, backed up while it runs,
restored into an empty SQLite home and into PostgreSQL, served again and compared byte for byte."""

from __future__ import annotations

import hashlib
import re
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from click.testing import CliRunner
from sqlalchemy import text

from adapterhub.cli.main import cli
from adapterhub.registry.server import db
from adapterhub.registry.server.backup import BackupError, backup
from adapterhub.registry.server.blobstore import LocalBlobStore
from adapterhub.registry.server.restore import restore
from adapterhub.registry.server.settings import Settings
from tests.helpers.live_server import fresh_postgres, run_server, start_server, stop_server
from tests.registry.factory import adapter_files, client, make_user, push

pytestmark = pytest.mark.slow  # the fast lane (make test-fast) skips this module

ADMIN = "admin-secret"
ISO_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)?$")


def ok(r, status: int = 200):
    assert r.status_code == status, r.text
    return r.json() if r.content else None


def populate(url: str) -> tuple[dict, str]:
    """Several adapters, versions (sharing a blob), aliases moved, a rollout, an evaluation, a yank,
    a private namespace; returns ``({(ns, name, version): files}, alice's token)``."""
    admin = client(url, ADMIN)
    token = make_user(admin, "alice", namespaces=["*"])
    c = client(url, token)
    ok(c.post("/api/v1/namespaces", json={"name": "alicepriv", "private": True}), 201)
    pushed: dict[tuple[str, str, str], dict[str, bytes]] = {}
    plan = [("alice", "sent", "1.0.0", "stable"), ("alice", "sent", "1.1.0", "stable"),
            ("alice", "sent", "2.0.0", "canary"), ("alice", "other", "0.1.0", None),
            ("alicepriv", "hidden", "1.0.0", "stable")]
    for i, (ns, name, version, alias) in enumerate(plan):
        files = {**adapter_files(seed=i), "README.md": b"# shared card\n"}
        if version == "2.0.0":
            files["docs/\u00fcn\u00efcode notes.md"] = "caf\u00e9 \u2713\n".encode()
        ok(push(c, ns, name, version, files, alias=alias, create=(ns, name) not in {k[:2] for k in pushed}), 201)
        pushed[(ns, name, version)] = files
    base = "/api/v1/adapters/alice/sent"
    ok(c.put(f"{base}/aliases/prod", json={"version": "1.1.0"}))
    ok(c.post(f"{base}/rollouts", json={"alias": "prod", "canary_version": "2.0.0", "weight": 10}), 201)
    ok(c.post(f"{base}/rollouts/prod/step", json={"weight": 30}))
    ok(c.post(f"{base}/rollouts/prod/outcomes", json={"batches": [
        {"arm": "stable", "requests": 7, "errors": 1, "latency_sum": 0.7, "latency_sq_sum": 0.0725},
        {"arm": "canary", "requests": 3, "latency_sum": 0.25, "quality_sum": 2.5, "quality_n": 3}]}))
    ok(c.post(f"{base}/versions/1.1.0/evaluations", json={"dataset": "sst2", "metrics": {"accuracy": 0.875}}), 201)
    ok(c.post(f"{base}/versions/1.0.0/yank", json={"reason": "wrong labels"}))
    ok(c.patch(base, json={"description": "sentiment, \u00e9t\u00e9 edition", "tags": ["nlp", "en"]}))
    return pushed, token


def _normal(value):
    """Timestamps compared as instants: SQLite and PostgreSQL may spell one UTC time differently."""
    if isinstance(value, dict):
        return {k: _normal(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_normal(v) for v in value]
    if isinstance(value, str) and ISO_RE.match(value):
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)
    return value


def snapshot(url: str) -> dict:
    """Everything the API says about every adapter (as the admin), before any file is pulled."""
    out = {}
    with client(url, ADMIN) as c:
        for a in ok(c.get("/api/v1/adapters", params={"limit": 200}))["items"]:
            ns, name = a["namespace"], a["name"]
            base = f"/api/v1/adapters/{ns}/{name}"
            aliases = ok(c.get(f"{base}/aliases"))
            out[f"{ns}/{name}"] = {
                "summary": a, "versions": ok(c.get(f"{base}/versions")), "aliases": aliases,
                "history": {al: ok(c.get(f"{base}/aliases/{al}/history")) for al in aliases},
                "evaluations": ok(c.get(f"{base}/evaluations")), "rollouts": ok(c.get(f"{base}/rollouts")),
                "audit": ok(c.get(f"{base}/audit")), "hf": ok(c.get(f"/api/models/{ns}/{name}")),
                "resolve": {al: [ok(c.get(f"{base}/resolve", params={"ref": f":{al}", "key": k})) for k in "abcdef"]
                            for al in aliases},
            }
    return _normal(out)


def assert_serves(url: str, pushed: dict, token: str) -> None:
    """Every file of every version, byte-identical over the REST route and the HF ``resolve`` route."""
    with client(url, ADMIN) as c:
        for (ns, name, version), files in pushed.items():
            listed = {f["path"] for f in ok(c.get(f"/api/v1/adapters/{ns}/{name}/versions/{version}"))["files"]}
            assert listed == set(files)
            for path, data in files.items():
                rest = c.get(f"/api/v1/adapters/{ns}/{name}/versions/{version}/files/{path}")
                hf = c.get(f"/{ns}/{name}/resolve/{version}/{path}")
                assert (rest.status_code, rest.content) == (200, data), (ns, name, version, path)
                assert (hf.status_code, hf.content) == (200, data), (ns, name, version, path)
    assert ok(client(url, token).get("/api/v1/whoami"))["user"] == "alice"  # tokens (hashes) came along
    assert client(url).get("/api/v1/adapters/alicepriv/hidden").status_code == 404  # still private


def assert_writable(url: str, token: str) -> None:
    """New rows after a restore get fresh ids (PostgreSQL sequences were moved past the old ones)."""
    c = client(url, token)
    ok(push(c, "alice", "sent", "3.0.0", adapter_files(seed=9), alias="stable", create=False), 201)
    ok(c.post("/api/v1/adapters/alice/sent/versions/3.0.0/evaluations",
              json={"dataset": "imdb", "metrics": {"accuracy": 0.5}}), 201)
    ok(c.post("/api/v1/adapters", json={"namespace": "alice", "name": "brand-new"}), 201)


def admin_cli(*args: str):
    return CliRunner().invoke(cli, ["admin", *args], catch_exceptions=False)


def target(home: Path, database_url: str | None = None) -> list[str]:
    args = ["--home", str(home), "--blob-url", f"file://{home / 'blobs'}",
            "--database-url", database_url or f"sqlite:///{home / 'registry.sqlite'}"]
    return args


def tree_hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@dataclass
class Source:
    backup: Path
    state: dict
    pushed: dict
    token: str


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Source:
    """A SQLite registry built through the API and backed up by the CLI while the server runs."""
    home = tmp_path_factory.mktemp("source")
    out = tmp_path_factory.mktemp("backups") / "b1"
    with run_server(home, admin_token=ADMIN) as srv:
        pushed, token = populate(srv.url)
        state = snapshot(srv.url)
        result = admin_cli("backup", str(out), *target(home), "--json")
        assert result.exit_code == 0, result.output
    return Source(out, state, pushed, token)


def test_backup_folder_has_a_manifest_of_every_table_and_blob(source):
    import json

    manifest = json.loads((source.backup / "manifest.json").read_text())
    assert manifest["format"] == "adapterhub-backup" and manifest["source"] == "sqlite"
    counts = {t["name"]: t["rows"] for t in manifest["tables"]}
    assert counts["version"] == 5 and counts["rollouts"] == 1 and counts["evaluation"] == 1
    assert counts["alias"] == 4 and counts["user"] == 2
    shared = hashlib.sha256(b"# shared card\n").hexdigest()
    assert sum(b["sha256"] == shared for b in manifest["blobs"]) == 1  # stored once, listed once
    for b in manifest["blobs"]:
        assert hashlib.sha256((source.backup / b["file"]).read_bytes()).hexdigest() == b["sha256"]
    assert [p.name for p in source.backup.parent.iterdir()] == ["b1"]  # no temp folder left behind


def test_restore_into_an_empty_home_serves_every_version_byte_identical(source, tmp_path):
    home = tmp_path / "restored"
    result = admin_cli("restore", str(source.backup), *target(home))
    assert result.exit_code == 0, result.output
    assert f"restored {source.backup}" in result.output
    with run_server(home, admin_token=ADMIN) as srv:
        assert snapshot(srv.url) == source.state
        assert_serves(srv.url, source.pushed, source.token)
        assert_writable(srv.url, source.token)


def test_sqlite_backup_restores_into_postgres_and_back_unchanged(source, tmp_path):
    with fresh_postgres() as pg:
        home = tmp_path / "pg-home"
        result = admin_cli("restore", str(source.backup), *target(home, pg))
        assert result.exit_code == 0, result.output
        again = tmp_path / "b2"
        result = admin_cli("backup", str(again), *target(home, pg))
        assert result.exit_code == 0, result.output
        for table in (source.backup / "tables").iterdir():  # the same rows, spelled the same way
            assert (again / "tables" / table.name).read_bytes() == table.read_bytes(), table.name
        srv = start_server(home, database_url=pg, admin_token=ADMIN)
        try:
            assert snapshot(srv.url) == source.state
            assert_serves(srv.url, source.pushed, source.token)
            assert_writable(srv.url, source.token)
        finally:
            stop_server(srv)
    home = tmp_path / "sqlite-again"
    result = admin_cli("restore", str(again), *target(home))
    assert result.exit_code == 0, result.output
    with run_server(home, admin_token=ADMIN) as srv:
        assert snapshot(srv.url) == source.state


def test_corrupted_blob_is_refused_naming_the_file_and_the_target_is_untouched(source, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(source.backup, bad)
    victim = next(p for p in sorted((bad / "blobs").rglob("*")) if p.is_file())
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x01
    victim.write_bytes(bytes(data))
    rel = f"blobs/{victim.parent.name}/{victim.name}"

    home = tmp_path / "live"
    assert admin_cli("restore", str(source.backup), *target(home)).exit_code == 0
    before = tree_hashes(home)
    result = admin_cli("restore", str(bad), *target(home), "--force")
    assert result.exit_code == 1
    assert f"backup {bad} is damaged: {rel} hashes to" in result.output
    assert "nothing was restored" in result.output
    assert tree_hashes(home) == before

    empty = tmp_path / "never"
    result = admin_cli("restore", str(bad), *target(empty))
    assert result.exit_code == 1 and rel in result.output
    assert not empty.exists()


def test_restore_refuses_a_registry_with_data_unless_forced(source, tmp_path):
    home = tmp_path / "used"
    with run_server(home, admin_token=ADMIN) as srv:  # a started registry has its admin user
        c = client(srv.url, ADMIN)
        make_user(c, "bob")
    before = tree_hashes(home)
    result = admin_cli("restore", str(source.backup), *target(home))
    assert result.exit_code == 1
    assert "the target registry already holds data; restore into an empty one, or pass --force" in result.output
    assert tree_hashes(home) == before
    result = admin_cli("restore", str(source.backup), *target(home), "--force", "--json")
    assert result.exit_code == 0, result.output
    assert "(replacing its data)" in result.output
    with run_server(home, admin_token=ADMIN) as srv:
        assert snapshot(srv.url) == source.state
        assert client(srv.url, ADMIN).post("/api/v1/users", json={"name": "bob"}).status_code == 201  # bob is gone
        assert_serves(srv.url, source.pushed, source.token)


def test_backup_refuses_an_existing_folder(source, tmp_path):
    (tmp_path / "taken").mkdir()
    result = admin_cli("backup", str(tmp_path / "taken"), *target(tmp_path / "nohome"))
    assert result.exit_code == 1 and f"{tmp_path / 'taken'} exists; back up into a new folder" in result.output


def _settings(home: Path) -> Settings:
    return Settings.from_env({"ADAPTERHUB_HOME": str(home)})


@pytest.mark.parametrize("damage", ["corrupt", "missing"])
def test_backup_of_a_damaged_store_fails_and_leaves_nothing(tmp_path, damage):
    settings = _settings(tmp_path / "home")
    engine = db.make_engine(settings.database_url)
    db.upgrade(engine)
    good = b"the real bytes"
    sha = hashlib.sha256(good).hexdigest()
    with db.writer(engine).begin() as conn:
        conn.execute(text("INSERT INTO blob (sha256, size, created_at) VALUES (:s, :n, '2024-01-01 00:00:00')"),
                     {"s": sha, "n": len(good)})
    engine.dispose()
    path = LocalBlobStore(settings.home / "blobs").path(sha)
    if damage == "corrupt":
        path.parent.mkdir(parents=True)
        path.write_bytes(b"the rEal bytes")
    message = {"corrupt": f"blob {sha} in the blob store is corrupt: it hashes to",
               "missing": f"blob {sha} is listed in the database but missing from the blob store"}[damage]
    with pytest.raises(BackupError, match=message):
        backup(settings, tmp_path / "out" / "b")
    assert list((tmp_path / "out").iterdir()) == []


def test_an_older_schema_backup_is_migrated_to_head(tmp_path):
    """A backup taken at revision 0002 loads into a target at head (downgraded, loaded, upgraded)."""
    old = _settings(tmp_path / "old")
    engine = db.make_engine(old.database_url)
    db.upgrade(engine, "0002")
    with db.writer(engine).begin() as conn:
        conn.execute(text("INSERT INTO \"user\" (id, name, is_admin, created_at) "
                          "VALUES (7, 'carol', 0, '2024-01-01 00:00:00')"))
    engine.dispose()
    out = backup(old, tmp_path / "b")
    assert out["schema_revision"] == "0002" and out["tables"]["user"] == 1

    new = _settings(tmp_path / "new")
    engine = db.make_engine(new.database_url)
    db.upgrade(engine)  # an empty registry already at head
    head = ScriptDirectory.from_config(db.alembic_config(engine)).get_current_head()
    engine.dispose()
    done = restore(new, tmp_path / "b")
    assert done["schema_now"] == head and not done["replaced"]
    engine = db.make_engine(new.database_url)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT id, name FROM \"user\"")).all() == [(7, "carol")]
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == head
    engine.dispose()


@pytest.mark.parametrize("command", [["admin"], ["admin", "backup"], ["admin", "restore"]], ids=" ".join)
def test_admin_commands_have_help_with_an_example(command):
    result = CliRunner().invoke(cli, [*command, "--help"])
    assert result.exit_code == 0 and "Example" in result.output and "adapterhub admin" in result.output
    if len(command) == 2:
        assert "--json" in result.output and "--database-url" in result.output
