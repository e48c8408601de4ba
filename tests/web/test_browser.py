"""The UI in a real browser: the registry and ``streamlit run`` on free ports, Debian's headless
Chromium driven by Playwright (never a downloaded browser). Screenshots go to tests/_artifacts/ui/."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from adapterhub.cli.ui import ui_command
from tests.helpers.live_server import free_port

CHROMIUM = shutil.which("chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "_artifacts" / "ui"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
pytestmark = [pytest.mark.slow, pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium)")]


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/_stcore/health", timeout=1).text == "ok"
    except httpx.HTTPError:
        return False


@pytest.fixture(scope="module")
def ui(hubdata, tmp_path_factory):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ADAPTERHUB_")}
    env.update(ADAPTERHUB_URL=hubdata.url, ADAPTERHUB_HOME=str(tmp_path_factory.mktemp("ui-home")))
    log = open(tmp_path_factory.mktemp("ui-log") / "streamlit.log", "w+b")  # noqa: SIM115
    proc = subprocess.Popen(ui_command("127.0.0.1", port), env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while not _healthy(url):
            assert proc.poll() is None and time.monotonic() < deadline, log.seek(0) or log.read().decode()
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()


@pytest.fixture(scope="module")
def page(ui):
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        tab = browser.new_page(viewport={"width": 1400, "height": 1700})
        tab.set_default_timeout(30_000)
        yield tab
        browser.close()


def shot(page, name: str) -> None:
    page.wait_for_timeout(400)  # let charts finish drawing
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def type_into(page, label: str, text: str) -> None:
    box = page.get_by_label(label, exact=True)
    box.fill(text)
    box.press("Enter")


def choose(page, label: str, option: str) -> None:
    # a select may first appear after a rerun that pulls an adapter: slow on a loaded 2-core box
    page.get_by_label(label, exact=True).click(timeout=90_000)
    page.get_by_role("option", name=option, exact=True).click()


def test_search_open_sign_in_evaluate_and_play_in_chromium(page, ui, hubdata):
    from playwright.sync_api import expect

    page.goto(ui)
    expect(page.get_by_role("heading", name="Browse adapters")).to_be_visible()
    type_into(page, "Search", "alpha")
    expect(page.get_by_text("acme/tiny-sent")).to_have_count(0)
    expect(page.get_by_text("acme/alpha", exact=True)).to_be_visible()
    shot(page, "1-browse")

    page.get_by_role("button", name="Open acme/alpha").click()
    expect(page.get_by_role("heading", name="acme/alpha")).to_be_visible()
    assert "ref=acme%2Falpha" in page.url or "ref=acme/alpha" in page.url
    versions = page.get_by_test_id("stDataFrame").first
    expect(versions).to_be_visible()
    expect(page.get_by_test_id("stVegaLiteChart").first).to_be_visible()
    expect(page.locator("#raw-html")).to_have_count(0)  # the README's HTML is never rendered
    assert page.evaluate("window.pwned === undefined")
    shot(page, "2-adapter")

    type_into(page, "Token", hubdata.token)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_text("signed in as admin")).to_be_visible()

    page.get_by_role("link", name="Compare").click()
    expect(page.get_by_role("heading", name="Compare versions")).to_be_visible()
    expect(page.get_by_text("adapter_config.json")).to_be_visible()
    shot(page, "3-compare")

    page.get_by_role("link", name="Evaluate").click()
    type_into(page, "Adapter", "acme/tiny-sent")
    choose(page, "Base model", "local folder ...")
    type_into(page, "Base model folder", str(hubdata.base))
    choose(page, "Evaluation data", "upload a file ...")
    page.locator("input[type=file]").set_input_files(str(hubdata.data))
    expect(page.get_by_text("reviews.jsonl")).to_be_visible()
    page.get_by_role("button", name="Run evaluation").click()
    expect(page.get_by_text("Confusion matrix")).to_be_visible(timeout=90_000)  # torch loads once
    expect(page.get_by_role("button", name="Post to acme/tiny-sent@1.0.0")).to_be_visible()
    shot(page, "4-evaluate")

    type_into(page, "Adapter", "acme/tiny-scored")  # its card records its protocol: the form starts from it
    expect(page.get_by_text("Prefilled from the protocol the card's figures were scored with")).to_be_visible()
    expect(page.get_by_label("Base model folder", exact=True)).to_have_value(str(hubdata.base))
    expect(page.get_by_label("Max length (tokens)", exact=True)).to_have_value("64")
    page.get_by_role("button", name="Run evaluation").click()
    expect(page.get_by_role("button", name="Post to acme/tiny-scored@1.0.0")).to_be_visible(timeout=90_000)
    shot(page, "4b-evaluate-by-the-cards-protocol")

    page.get_by_role("link", name="Adapter", exact=True).click()
    expect(page.get_by_role("heading", name="Reproduce 1.0.0")).to_be_visible()
    page.get_by_role("button", name="Reproduce").first.click()
    expect(page.get_by_text("reproduced: accuracy")).to_be_visible(timeout=90_000)
    expect(page.get_by_role("button", name="Record this re-run on acme/tiny-scored@1.0.0")).to_be_visible()
    shot(page, "4c-reproduce")

    page.get_by_role("link", name="Playground").click()
    expect(page.get_by_role("heading", name="Compose playground")).to_be_visible()
    choose(page, "Base model", "local folder ...")
    type_into(page, "Base model folder", str(hubdata.base))
    type_into(page, "Adapters (references, comma separated)", "acme/tiny-sent")
    page.get_by_label("Input text").fill("the film was really good")
    page.get_by_role("button", name="Run", exact=True).click()
    expect(page.get_by_test_id("stMetric")).to_have_count(2, timeout=60_000)
    expect(page.get_by_text("With adapters")).to_be_visible()
    shot(page, "5-playground")

    page.get_by_role("link", name="Rollouts").click()
    type_into(page, "Adapter", "other/roll")
    expect(page.get_by_text("canary weight", exact=True)).to_be_visible()
    expect(page.get_by_role("heading", name="History")).to_be_visible()
    shot(page, "6-rollouts")
