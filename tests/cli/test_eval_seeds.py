"""Every seed's card figures re-made by `adapterhub eval` from a fresh hub, with no arguments but the reference.

The seeds are published into a live registry as `adapterhub up` publishes them (their card figures
become evaluations carrying the protocol). Then, as a new user would:

- `adapterhub eval adapterhub/minilm-bbc-news-lora --json` scores the card's data by the card's
  protocol and gives the card's confusion matrix exactly; `--post` stores it with the protocol;
- `adapterhub eval --verify REF` re-runs every seed's recorded figures from their protocols:
  classification must give the identical confusion matrix, perplexity within 1e-4 relative;
- `--verify --evaluation ID` re-runs a registry record, and `--post` marks it reproduced.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from adapterhub import format as fmt
from adapterhub.registry.client import Hub
from adapterhub.registry.seeding import seed_folders, seed_registry
from tests.cli.support import js, run

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2] / "seed_adapters"


@pytest.fixture(scope="module")
def seeded(server):
    with Hub(server.url, token=server.admin_token) as hub:
        seed_registry(hub, ROOT, say=lambda m: None)
    return server


def _card(name: str) -> dict:
    return fmt.read_json_object(ROOT / name / fmt.CARD_FILE)


def test_eval_with_no_arguments_gives_the_cards_confusion_matrix_and_stores_the_protocol(seeded, online):
    card = _card("minilm-bbc-news-lora")
    out = js("eval", "adapterhub/minilm-bbc-news-lora", "--post")
    assert out["confusion_matrix"] == card["evaluation"]["confusion_matrix"]
    assert out["metrics"]["accuracy"] == card["metrics"]["accuracy"]
    protocol = out["protocol"]
    assert protocol["data"] == card["evaluation"]["protocol"]["data"] and "overrides" not in protocol
    assert protocol["max_length"] == card["recipe"]["max_length"] and protocol["scoring"] == "argmax-head"
    assert protocol["base"] == "sentence-transformers/all-MiniLM-L6-v2"
    with Hub() as hub:
        stored = [e for e in hub.evaluations("adapterhub/minilm-bbc-news-lora") if e["id"] == out["posted"]["id"]]
    assert stored[0]["protocol"]["data"] == protocol["data"] and stored[0]["confusion_matrix"] == out["confusion_matrix"]
    shown = run("eval", "adapterhub/minilm-bbc-news-lora", "--max-length", "64")
    assert shown.exit_code == 0 and "override max_length" in shown.stdout and "64 (card: 128)" in shown.stdout


@pytest.mark.parametrize("folder", seed_folders(ROOT), ids=lambda p: p.name)
def test_verify_reproduces_every_seeds_card_figures(seeded, online, folder):
    out = js("eval", "--verify", f"adapterhub/{folder.name}")
    assert out["reproduced"], json.dumps([v["differences"] for v in out["verifications"]])
    card = _card(folder.name)
    assert len(out["verifications"]) == 1 + len(card.get("evaluations") or [])
    for check in out["verifications"]:
        assert check["differences"] == [] and check["result"]["protocol"]["software"]["torch"]


def test_verify_a_registry_record_and_mark_it_reproduced(seeded, online):
    ref = "adapterhub/minilm-reuters-r8-ia3"
    with Hub() as hub:
        [record] = [e for e in hub.evaluations(ref) if e.get("protocol") and not e.get("verification")][:1]
    out = js("eval", "--verify", ref, "--evaluation", record["id"], "--post")
    assert out["reproduced"]
    with Hub() as hub:
        marks = [e["verification"] for e in hub.evaluations(ref) if e.get("verification")]
    assert {"of": record["id"], "reproduced": True} in [{k: m.get(k) for k in ("of", "reproduced")} for m in marks]


def test_verify_refuses_options_and_a_record_without_protocol(seeded, online):
    result = run("eval", "--verify", "adapterhub/minilm-reuters-r8-ia3", "--max-length", "64")
    assert result.exit_code == 2 and "drop --max-length" in result.output
    with Hub() as hub:
        hub.post_eval("adapterhub/minilm-reuters-r8-ia3@1.0.0", "mine", "", {"accuracy": 0.5})
        bare = [e for e in hub.evaluations("adapterhub/minilm-reuters-r8-ia3") if not e.get("protocol")][-1]
    result = run("eval", "--verify", "adapterhub/minilm-reuters-r8-ia3", "--evaluation", bare["id"])
    assert result.exit_code == 2 and "without a protocol" in result.output
