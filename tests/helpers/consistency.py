"""What "the registry restarted consistent" means, checked through the API after a fault.

- every acknowledged version lists and downloads byte-identical to what was pushed;
- no half-written version is visible: every listed version was acknowledged or its answer was
  lost (``maybe``), and every file of it downloads whole (size and sha256 as listed);
- the audit log matches the state: its ``version.publish`` entries name exactly the listed
  versions, replaying its ``alias.set``/``alias.delete`` entries gives exactly the aliases, and
  each rollout's state and weight are those of its last ``rollout.*`` entry;
- rollouts are valid: at most one open per alias, its stable version is where the alias points,
  and its weight is within 0-100.

>>> check_consistent(srv.url, token, "acme", {("a", "1.0.0"): files})          # doctest: +SKIP
"""

from __future__ import annotations

import hashlib

import httpx

OPEN_STATES = ("active", "paused")


def _get(c: httpx.Client, path: str, **params) -> httpx.Response:
    r = c.get(path, params=params)
    assert r.status_code == 200, f"GET {path}: {r.status_code} {r.text[:300]}"
    return r


def check_adapter(c: httpx.Client, ns: str, name: str, acked: dict[str, dict[str, bytes]],
                  maybe: frozenset[str] = frozenset()) -> dict:
    """Check one adapter (see the module docstring); return its aliases and rollouts for more checks."""
    base = f"/api/v1/adapters/{ns}/{name}"
    listed = {v["version"]: v for v in _get(c, f"{base}/versions").json()}
    assert set(acked) <= set(listed), f"{ns}/{name}: acknowledged but gone: {sorted(set(acked) - set(listed))}"
    assert set(listed) <= set(acked) | set(maybe), \
        f"{ns}/{name}: visible but never acknowledged: {sorted(set(listed) - set(acked) - set(maybe))}"
    for version, v in listed.items():
        for f in v["files"]:
            body = _get(c, f"{base}/versions/{version}/files/{f['path']}").content
            assert len(body) == f["size"] and hashlib.sha256(body).hexdigest() == f["sha256"], \
                f"{ns}/{name}@{version}/{f['path']} does not match its listing"
        if version in acked:
            assert {f["path"] for f in v["files"]} == set(acked[version]), f"{ns}/{name}@{version}: other files"
            for path, data in acked[version].items():
                assert _get(c, f"{base}/versions/{version}/files/{path}").content == data, \
                    f"{ns}/{name}@{version}/{path} is not byte-identical to what was pushed"

    audit = _get(c, f"{base}/audit").json()
    published = [e["details"]["version"] for e in audit if e["action"] == "version.publish"]
    assert sorted(published) == sorted(listed), f"{ns}/{name}: audit publishes {published}, listed {sorted(listed)}"

    replayed: dict[str, str] = {}
    for e in audit:
        if e["action"] == "alias.set":
            replayed[e["details"]["alias"]] = e["details"]["version"]
        elif e["action"] == "alias.delete":
            replayed.pop(e["details"]["alias"], None)
    aliases = _get(c, f"{base}/aliases").json()
    assert aliases == replayed, f"{ns}/{name}: aliases {aliases} but the audit log says {replayed}"

    rollouts = _get(c, f"{base}/rollouts").json()
    last: dict[int, dict] = {}
    for e in audit:
        if e["action"].startswith("rollout."):  # a start entry has no state: a rollout starts active
            last[e["details"]["rollout_id"]] = {"state": "active", **e["details"]}
    open_per_alias: dict[str, int] = {}
    for r in rollouts:
        assert 0 <= r["weight"] <= 100, r
        assert r["id"] in last, f"rollout {r['id']} has no audit entry: {r}"
        assert (r["state"], r["weight"]) == (last[r["id"]]["state"], last[r["id"]]["weight"]), \
            f"rollout {r['id']} is {r['state']} at {r['weight']} but its last audit entry says {last[r['id']]}"
        if r["state"] in OPEN_STATES:
            assert r["alias"] not in open_per_alias, f"two open rollouts on {r['alias']!r}: {rollouts}"
            open_per_alias[r["alias"]] = r["id"]
            assert aliases.get(r["alias"]) == r["stable_version"], \
                f"open rollout {r['id']} rolls out from {r['stable_version']} but {r['alias']!r} is {aliases}"
    return {"aliases": aliases, "rollouts": {r["id"]: r for r in rollouts}, "versions": sorted(listed)}


def check_consistent(url: str, token: str, ns: str, acked: dict[tuple[str, str], dict[str, bytes]],
                     maybe: frozenset[tuple[str, str]] = frozenset()) -> dict[str, dict]:
    """Check every adapter of namespace ``ns``; ``acked`` maps (adapter, version) to its files."""
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60) as c:
        names = {a["name"] for a in _get(c, "/api/v1/adapters", namespace=ns, limit=200).json()["items"]}
        assert {a for a, _v in acked} <= names, f"adapters gone: {sorted({a for a, _v in acked} - names)}"
        return {name: check_adapter(c, ns, name, {v: f for (a, v), f in acked.items() if a == name},
                                    frozenset(v for a, v in maybe if a == name))
                for name in sorted(names)}
