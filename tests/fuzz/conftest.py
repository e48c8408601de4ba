"""The fuzzed callers, and their order: every anonymous item first, then the read-only token, then admin.

pytest would otherwise interleave them per operation, and an admin item early on (revoking the
read-only token, yanking the seeded version, ending its rollout) would leave the later read-only
items nothing but 401s and 404s to see. Backends stay grouped, so each server starts once.
"""

from __future__ import annotations

import pytest

CALLERS = ["anonymous", "read", "admin"]
# Within one caller's turn, last: revoking tokens (the read-only one may revoke itself).
LAST = "[DELETE /api/v1/tokens/{token_id}]"


@pytest.fixture(params=CALLERS)
def caller(request: pytest.FixtureRequest) -> str:
    return request.param


def _rank(item: pytest.Item) -> tuple[str, int, bool]:
    params = getattr(getattr(item, "callspec", None), "params", {})
    turn = CALLERS.index(params["caller"]) if "caller" in params else -1
    return str(params.get("world", "")), turn, LAST in item.name


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    slots = [n for n, item in enumerate(items) if item.path.name == "test_schemathesis.py"]
    for n, item in zip(slots, sorted((items[n] for n in slots), key=_rank), strict=True):
        items[n] = item
