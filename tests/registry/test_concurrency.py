"""Many clients at once against one server, and two servers racing on one PostgreSQL."""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest

from tests.helpers.live_server import fresh_postgres, run_server
from tests.registry.factory import adapter_files, client, make_user, manifest, push, sha, upload

pytestmark = pytest.mark.slow  # the fast lane (make test-fast) skips this module

THREADS = 20


def test_twenty_threads_push_alias_and_pull(server, admin):
    ns = f"c{uuid.uuid4().hex[:8]}"
    token = make_user(admin, ns)
    setup = client(server.url, token)
    assert setup.post("/api/v1/adapters", json={"namespace": ns, "name": "busy"}).status_code == 201
    shared = b"shared-blob-" * 100  # every thread uploads this one too: concurrent dedup
    barrier = threading.Barrier(THREADS)

    def worker(i: int) -> list[str]:
        errors = []
        with client(server.url, token) as c:
            files = {**adapter_files(100 + i), "shared.txt": shared}
            barrier.wait()
            r = push(c, ns, "busy", f"1.{i}.0", files, create=False)
            if r.status_code != 201:
                errors.append(f"push {i}: {r.status_code} {r.text}")
            r = c.put(f"/api/v1/adapters/{ns}/busy/aliases/stable", json={"version": f"1.{i}.0"})
            if r.status_code != 200:
                errors.append(f"alias {i}: {r.status_code} {r.text}")
            for path, data in files.items():
                r = c.get(f"/api/v1/adapters/{ns}/busy/versions/1.{i}.0/files/{path}")
                if r.status_code != 200 or r.content != data:
                    errors.append(f"pull {i} {path}: {r.status_code}")
            r = c.get(f"/api/v1/adapters/{ns}/busy/resolve", params={"ref": ":stable"})
            if r.status_code != 200:
                errors.append(f"resolve {i}: {r.status_code}")
        return errors

    with ThreadPoolExecutor(THREADS) as pool:
        errors = [e for errs in pool.map(worker, range(THREADS)) for e in errs]
    assert errors == []
    versions = setup.get(f"/api/v1/adapters/{ns}/busy/versions").json()
    assert sorted(v["version"] for v in versions) == sorted(f"1.{i}.0" for i in range(THREADS))
    hist = setup.get(f"/api/v1/adapters/{ns}/busy/aliases/stable/history").json()
    assert len(hist) == THREADS and sum(h["to"] is None for h in hist) == 1
    assert all(a["to"] == b["from"] for a, b in zip(hist, hist[1:], strict=False))
    assert setup.get(f"/api/v1/adapters/{ns}/busy/aliases").json() == {"stable": hist[-1]["version"]}
    summary = setup.get(f"/api/v1/adapters/{ns}/busy").json()
    assert summary["downloads"] == THREADS and summary["latest_version"] == f"1.{THREADS - 1}.0"
    actions = [e["action"] for e in setup.get(f"/api/v1/adapters/{ns}/busy/audit").json()]
    assert actions.count("version.publish") == THREADS and actions.count("alias.set") == THREADS


def test_two_servers_race_to_publish_the_same_version(tmp_path: Path):
    blobs = f"file://{tmp_path / 'shared-blobs'}"
    env = {"ADAPTERHUB_BLOB_URL": blobs}
    with fresh_postgres() as url:
        with run_server(tmp_path / "a", url, env=env) as a, run_server(tmp_path / "b", url, env=env) as b:
            admin = client(a.url, a.admin_token)
            token = make_user(admin, "racer")
            ca, cb = client(a.url, token), client(b.url, token)
            assert ca.post("/api/v1/adapters", json={"namespace": "racer", "name": "r"}).status_code == 201
            rounds = 8
            for i in range(rounds):
                files = adapter_files(200 + i)
                # the same blobs uploaded through both servers at once
                with ThreadPoolExecutor(2) as pool:
                    list(pool.map(lambda c, f=files: upload(c, f), [ca, cb]))
                body = {"version": f"0.{i}.0", "files": manifest(files), "alias": "stable"}
                barrier = threading.Barrier(2)

                def post(c, body=body, barrier=barrier):
                    barrier.wait()
                    return c.post("/api/v1/adapters/racer/r/versions", json=body)

                with ThreadPoolExecutor(2) as pool:
                    results = list(pool.map(post, [ca, cb]))
                assert sorted(r.status_code for r in results) == [201, 409], [r.text for r in results]
                loser = next(r for r in results if r.status_code == 409)
                assert loser.json()["code"] == "VersionExists"
            for c in (ca, cb):
                assert len(c.get("/api/v1/adapters/racer/r/versions").json()) == rounds
        with psycopg.connect(url) as conn:
            q = lambda sql: conn.execute(sql).fetchone()[0]  # noqa: E731
            assert q("select count(*) from version") == rounds
            assert q("select count(*) from file") == rounds * 3
            assert q("select count(*) from file where version_id not in (select id from version)") == 0
            assert q("select count(*) from downloadcount") == rounds
            assert q("select count(*) from aliashistory where valid_to is null") == 1
            assert q("select count(*) from blob") == rounds * 2 + 1  # adapterhub.json is the same every round
            assert q("select count(*) from auditlog where action = 'version.publish'") == rounds
            shas = [row[0] for row in conn.execute("select sha256 from blob")]
        root = tmp_path / "shared-blobs"
        stored = {p.name for p in (root / "sha256").rglob("*") if p.is_file()}
        assert stored == set(shas)  # no orphan blob on disk, none missing
        assert list((root / "tmp").iterdir()) == []
        assert sha(adapter_files(200)["adapterhub.json"]) in stored
