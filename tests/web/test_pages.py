"""Each page's logic through Streamlit's AppTest, against a live registry on 127.0.0.1."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from adapterhub.registry.client import Hub
from tests.web.conftest import APP, app, texts

pytestmark = pytest.mark.slow  # the fast lane (make test-fast) skips this module


@pytest.fixture(autouse=True)
def isolated(hubdata, ui_env):
    """Every test here gets the live registry's session and a clean environment."""


def test_browse_lists_cards_and_filters_by_base_model(hubdata):
    at = app(hubdata)
    body = texts(at.markdown)
    assert {"acme/alpha", "other/beta", "acme/tiny-sent", "acme/tiny-lm", "acme/tiny-scored", "other/roll"} == {
        m.value.strip("*") for m in at.markdown if str(m.value).startswith("**")}
    assert "best metric: `accuracy 0.9`" in body
    at.text_input(key="f_base").input("other/base").run()
    body = texts(at.markdown)
    assert "other/beta" in body and "acme/alpha" not in body


def test_browse_pages_through_results_with_the_cursor(hubdata):
    at = AppTest.from_file(APP, default_timeout=30)
    at.session_state["url"], at.session_state["ref"] = hubdata.url, ""
    at.session_state["browse_page_size"] = 3
    at.run()
    first = {m.value for m in at.markdown if str(m.value).startswith("**")}
    assert len(first) == 3 and at.button(key="browse_prev").disabled
    at.button(key="browse_next").click().run()
    second = {m.value for m in at.markdown if str(m.value).startswith("**")}
    assert len(second) == 3 and not first & second  # 6 adapters in all
    assert at.button(key="browse_next").disabled
    at.button(key="browse_prev").click().run()
    assert {m.value for m in at.markdown if str(m.value).startswith("**")} == first


def test_browse_shows_an_unreachable_registry_as_a_readable_error(hubdata):
    at = AppTest.from_file(APP, default_timeout=30)
    at.session_state["url"], at.session_state["ref"] = "http://127.0.0.1:9", ""
    at.run()
    assert not at.exception
    assert "cannot reach the registry at http://127.0.0.1:9" in at.error[0].value


def test_adapter_page_shows_versions_aliases_files_chart_and_snippets(hubdata):
    at = app(hubdata, "pages/adapter.py", ref="acme/alpha")
    assert at.title[0].value == "acme/alpha"
    versions = at.dataframe[0].value
    assert list(versions["version"]) == ["1.1.0", "1.0.0"]
    assert "`stable` → `1.1.0`" in texts(at.markdown)
    codes = texts(at.code)
    assert "adapterhub pull acme/alpha@1.1.0" in codes
    assert "HF_ENDPOINT" in codes and "PeftModel.from_pretrained(base, 'acme/alpha', revision='1.1.0')" in codes
    files = at.dataframe[2].value  # versions, evaluations, files
    assert set(files["path"]) == {"README.md", "adapter_config.json", "adapter_model.safetensors", "adapterhub.json"}
    assert all(len(s) == 64 for s in files["sha256"])
    readme = next(m for m in at.markdown if "Alpha adapter" in str(m.value))
    assert readme.allow_html is False
    moves = at.dataframe[-1].value
    assert list(moves["to"]) == ["1.1.0", "1.0.0"] and list(moves["from"]) == ["1.0.0", "-"]
    assert len(at.get("vega_lite_chart")) == 1  # metrics over versions


def test_adapter_page_names_an_unknown_adapter_without_a_traceback(hubdata):
    at = app(hubdata, "pages/adapter.py", ref="acme/alpah")
    assert "did you mean acme/alpha" in at.error[0].value


def test_compare_shows_the_config_diff_and_both_metrics(hubdata):
    at = app(hubdata, "pages/compare.py", ref="acme/alpha")
    metrics = at.dataframe[0].value
    assert metrics.set_index("metric").loc["accuracy"].tolist() == [0.81, 0.9]
    diff = at.dataframe[1].value.set_index("key")
    assert diff.loc["r"].tolist() == ["4", "8"] and diff.loc["lora_alpha"].tolist() == ["8", "16"]
    sizes = [m.value for m in at.metric]  # A = 1.0.0, B = 1.1.0 (2 KiB more weights)
    assert len(sizes) == 2 and sizes[0].endswith("KiB") and float(sizes[1][:-4]) > float(sizes[0][:-4]) + 1.9


def test_evaluate_runs_an_upload_shows_the_confusion_matrix_and_posts(hubdata):
    at = app(hubdata, "pages/evaluate.py", ref="acme/tiny-sent")
    at.selectbox(key="ev_base").select("local folder ...").run()
    at.text_input(key="ev_base_path").input(str(hubdata.base)).run()
    at.selectbox(key="ev_data").select("upload a file ...").run()
    at.get("file_uploader")[0].set_value(("reviews.jsonl", hubdata.data.read_bytes(), "application/json")).run()
    at.button[0].click().run()  # "Run evaluation"
    assert not at.exception and not at.error, [e.value for e in at.error]
    names = [m.label for m in at.metric]
    assert names == ["examples", "accuracy", "macro_f1"]
    assert at.metric[0].value == "48"
    matrix = at.dataframe[0].value
    assert list(matrix.index) == ["neg", "pos"] and int(matrix.values.sum()) == 48
    at.button(key="ev_post").click().run()
    assert "recorded on acme/tiny-sent@1.0.0" in at.success[-1].value
    evals = Hub(hubdata.url, progress=False).versions("acme/tiny-sent")[0]["evaluations"]
    assert [e["dataset"] for e in evals] == ["reviews.jsonl"]
    # a card without a protocol: the result still carries the one it was run by, and it is recorded
    assert evals[0]["protocol"]["data"]["sha256"] == evals[0]["dataset_sha256"] and not evals[0]["protocol"].get("overrides")
    assert evals[0]["protocol"]["base"] == str(hubdata.base) and evals[0]["confusion_matrix"] == matrix.values.tolist()


def test_evaluate_hides_posting_without_write_scope(hubdata):
    at = app(hubdata, "pages/evaluate.py", token="", ref="acme/tiny-sent")
    at.selectbox(key="ev_base").select("local folder ...").run()
    at.text_input(key="ev_base_path").input(str(hubdata.base)).run()
    at.selectbox(key="ev_data").select("upload a file ...").run()
    at.get("file_uploader")[0].set_value(("reviews.jsonl", hubdata.data.read_bytes(), "application/json")).run()
    at.button[0].click().run()
    assert [m.label for m in at.metric] == ["examples", "accuracy", "macro_f1"]
    assert "ev_post" not in [b.key for b in at.button]
    assert "Sign in with a token that may write to `acme`" in at.caption[-1].value


def test_evaluate_shows_a_label_mismatch_as_one_line(hubdata, tmp_path):
    bad = tmp_path / "topics.jsonl"
    bad.write_text('{"text": "the film", "label": "sport"}\n{"text": "a plot", "label": "tech"}\n')
    at = app(hubdata, "pages/evaluate.py", ref="acme/tiny-sent")
    at.selectbox(key="ev_base").select("local folder ...").run()
    at.text_input(key="ev_base_path").input(str(hubdata.base)).run()
    at.selectbox(key="ev_data").select("upload a file ...").run()
    at.get("file_uploader")[0].set_value(("topics.jsonl", bad.read_bytes(), "application/json")).run()
    at.button[0].click().run()
    assert not at.exception
    assert "label 'sport' is not one the model predicts (neg, pos)" in at.error[0].value


def test_evaluate_prefills_the_form_from_the_cards_protocol_and_records_what_was_changed(hubdata):
    at = app(hubdata, "pages/evaluate.py", ref="acme/tiny-scored")
    assert at.selectbox(key="ev_base").value == "local folder ..."
    assert at.text_input(key="ev_base_path").value == str(hubdata.base)
    assert at.selectbox(key="ev_data").value == str(hubdata.data)
    settings = [at.number_input(key=k).value for k in ("ev_sample", "ev_sample_seed", "ev_max_length", "ev_batch_size")]
    assert settings == [24, 0, 64, 16] and at.selectbox(key="ev_scoring").value == "argmax-head"
    assert "Prefilled from the protocol the card's figures were scored with" in texts(at.caption)
    at.button(key="ev_run").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    card = json.loads((hubdata.scored / "adapterhub.json").read_text())
    assert at.metric[0].value == "24"  # the card's seeded sample, not the 48 reviews
    assert at.dataframe[0].value.values.tolist() == card["evaluation"]["confusion_matrix"]
    body = texts(at.markdown)
    assert "seeded sample of 24, seed 0), max_length 64" in body and "**overrides**" not in body
    at.number_input(key="ev_max_length").set_value(8).run()
    at.button(key="ev_run").click().run()
    assert "**overrides**: `max_length 8 (card: 64)`" in texts(at.markdown)
    at.button(key="ev_post").click().run()
    assert "recorded on acme/tiny-scored@1.0.0" in at.main.success[-1].value
    posted = Hub(hubdata.url, progress=False).evaluations("acme/tiny-scored")[-1]
    assert posted["protocol"]["overrides"] == {"max_length": {"card": 64, "used": 8}}
    assert posted["protocol"]["data"]["sample"] == 24 and sum(map(sum, posted["confusion_matrix"])) == 24
    assert posted["dataset"] == f"{hubdata.data} (seeded sample of 24, seed 0)"


def test_reproduce_reruns_the_cards_figures_and_records_the_rerun(hubdata):
    at = app(hubdata, "pages/adapter.py", ref="acme/tiny-scored")
    table = at.dataframe[1].value.set_index("evaluation")
    assert "seeded sample of 24" in table.loc["card", "protocol"] and "max_length 64" in table.loc["card", "protocol"]
    at.button(key="rp_card-1.0.0").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert at.main.success[0].value.startswith("reproduced: accuracy")
    at.button(key="rp_post_card-1.0.0").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    rerun = Hub(hubdata.url, progress=False).evaluations("acme/tiny-scored")[-1]
    assert rerun["verification"] == {"of": None, "of_card": True, "reproduced": True, "differences": []}
    assert f"recorded on acme/tiny-scored@1.0.0 as #{rerun['id']}" in texts(at.main.success)
    table = at.dataframe[1].value.set_index("evaluation")
    assert table.loc["card", "verification"] == f"reproduced by #{rerun['id']}"
    assert table.loc[f"#{rerun['id']}", "verification"] == "re-run of the card: reproduced"


def test_reproduce_names_the_differences_and_needs_write_scope_to_record(hubdata):
    hub = Hub(hubdata.url, hubdata.token, progress=False)
    card = hub.versions("acme/tiny-scored")[0]["card"]
    protocol, matrix = card["evaluation"]["protocol"], card["evaluation"]["confusion_matrix"]
    claimed = [row[::-1] for row in matrix]  # every prediction the other class
    assert claimed != matrix
    posted = hub.post_eval("acme/tiny-scored@1.0.0", "reviews (claimed)", protocol["data"]["sha256"],
                           {"accuracy": 0.01}, protocol=protocol, confusion_matrix=claimed)
    # and one whose data is not on this machine
    gone = hub.post_eval("acme/tiny-scored@1.0.0", "elsewhere", protocol["data"]["sha256"], {"accuracy": 1.0},
                         protocol={**protocol, "data": {**protocol["data"], "ref": "/nowhere/test.jsonl"}},
                         confusion_matrix=matrix)
    at = app(hubdata, "pages/adapter.py", token="", ref="acme/tiny-scored")
    table = at.dataframe[1].value.set_index("evaluation")
    assert table.loc[f"#{posted['id']}", "protocol"] == table.loc["card", "protocol"]  # same protocol, other figures
    assert table.loc[f"#{posted['id']}", "verification"] == "not re-run yet"
    at.button(key=f"rp_ev-{posted['id']}").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    warning = at.main.warning[0].value
    assert warning.startswith("NOT reproduced: accuracy") and "confusion matrix differs" in warning
    assert f"rp_post_ev-{posted['id']}" not in [b.key for b in at.button]
    assert "Sign in with a token that may write to `acme` to record this re-run" in texts(at.caption)
    at.button(key=f"rp_ev-{gone['id']}").click().run()  # said on that item; the rest of the page still shows
    assert not at.exception and len(at.main.error) == 1, [e.value for e in at.error]
    assert at.main.error[0].value.startswith(f"could not re-run evaluation #{gone['id']}")
    assert "/nowhere/test.jsonl" in at.main.error[0].value and "Card" in [h.value for h in at.subheader]
    assert at.main.warning[0].value == warning


def test_playground_shows_base_and_adapted_probabilities(hubdata):
    at = app(hubdata, "pages/playground.py", ref="acme/tiny-sent")
    at.selectbox(key="pg_base").select("local folder ...").run()
    at.text_input(key="pg_base_path").input(str(hubdata.base)).run()
    at.text_area(key="pg_text").input("the film was really good").run()
    at.button[0].click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    frame = at.dataframe[0].value
    assert list(frame.columns) == ["base", "adapted"] and list(frame.index) == ["neg", "pos"]
    assert abs(frame["base"].sum() - 1) < 1e-3 and abs(frame["adapted"].sum() - 1) < 1e-3
    assert (frame["base"] != frame["adapted"]).any()
    assert [m.label for m in at.metric] == ["prediction", "prediction"]


def playground(hubdata, base: Path, refs: str, text: str, mode: str = "single") -> AppTest:
    at = app(hubdata, "pages/playground.py")
    at.selectbox(key="pg_base").select("local folder ...").run()
    at.text_input(key="pg_base_path").input(str(base)).run()
    at.text_input(key="pg_refs").input(refs).run()
    at.radio(key="pg_mode").set_value(mode).run()
    at.text_area(key="pg_text").input(text).run()
    at.button[0].click().run()
    assert not at.exception
    return at


@pytest.mark.parametrize("mode", ["stack", "average"])
def test_playground_composes_two_adapters(hubdata, mode):
    at = playground(hubdata, hubdata.base, "acme/tiny-sent@1.0.0, acme/tiny-sent:stable", "good", mode=mode)
    assert not at.error, [e.value for e in at.error]
    frame = at.dataframe[0].value
    assert list(frame.index) == ["neg", "pos"] and abs(frame["adapted"].sum() - 1) < 1e-3


def test_playground_generates_text_with_a_language_model_adapter(hubdata):
    at = playground(hubdata, hubdata.lm_base, "acme/tiny-lm", "the film was")
    assert not at.error, [e.value for e in at.error]
    outputs = [c.value for c in at.code]
    assert len(outputs) == 2 and all(isinstance(o, str) and o for o in outputs)
    assert not at.dataframe and not at.metric


def test_playground_single_mode_refuses_two_adapters(hubdata):
    at = app(hubdata, "pages/playground.py", ref="acme/tiny-sent")
    at.selectbox(key="pg_base").select("local folder ...").run()
    at.text_input(key="pg_base_path").input(str(hubdata.base)).run()
    at.text_input(key="pg_refs").input("acme/tiny-sent, acme/tiny-sent@1.0.0").run()
    at.text_area(key="pg_text").input("good").run()
    at.button[0].click().run()
    assert "single mode runs one adapter, 2 were picked: choose stack" in at.error[0].value


def _sign_in_script(url: str, tokens: list[str]) -> None:
    import streamlit as st

    from adapterhub.web import state

    st.session_state["url"] = url
    for token in tokens:
        st.write(f"{token}: {state.sign_in(token)} -> {state.token()!r} write={state.can_write('acme')}")


def test_sign_in_refuses_a_bad_token_and_grants_writes_only_with_scope(hubdata):
    at = AppTest.from_function(_sign_in_script, args=(hubdata.url, ["ah_wrong", hubdata.token, ""]),
                               default_timeout=30)
    at.run()
    lines = [m.value for m in at.markdown]
    assert lines[0].startswith("ah_wrong: invalid, expired or revoked token") and lines[0].endswith("-> '' write=False")
    assert lines[1] == f"{hubdata.token}: None -> '{hubdata.token}' write=True"
    assert lines[2] == ": None -> '' write=False"


def test_sidebar_shows_who_is_signed_in(hubdata):
    at = app(hubdata)
    assert at.sidebar.success[0].value == "signed in as **admin** (admin)"
    assert at.sidebar.caption[0].value == f"registry: {hubdata.url}"


def _anonymous_script(url: str) -> None:
    import streamlit as st

    from adapterhub.web import state

    st.session_state["url"] = url
    st.write(f"auth={'Authorization' in state.hub()._http.headers} token={state.token()!r}")


def test_a_local_ui_starts_with_the_cli_login_and_a_shared_one_anonymous(hubdata, monkeypatch):
    from adapterhub.registry import config

    config.store_token(hubdata.token)
    at = app(hubdata, token="")
    assert at.sidebar.success[0].value == "signed in as **admin** (admin)"
    monkeypatch.setenv("ADAPTERHUB_UI_SHARED", "1")
    at = app(hubdata, token="")
    assert not at.sidebar.success
    at = AppTest.from_function(_anonymous_script, args=(hubdata.url,), default_timeout=30)
    at.run()
    assert at.markdown[0].value == "auth=False token=''"  # the stored login is never sent


def test_rollouts_show_the_split_and_outcomes_and_writers_step_then_promote(hubdata):
    at = app(hubdata, "pages/rollouts.py", ref="other/roll")
    facts = {m.label: m.value for m in at.metric}
    assert facts == {"stable": "1.0.0", "canary": "1.1.0", "canary weight": "10 %", "state": "active", "next step": "-"}
    arms = at.dataframe[0].value
    assert arms.loc["requests"].tolist() == [90, 10] and arms.loc["errors"].tolist() == [2, 0]
    assert len(at.get("vega_lite_chart")) == 2  # error rate and mean latency per arm
    at.number_input(key="ro_weight").set_value(50.0).run()
    at.button(key="ro_step").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert {m.label: m.value for m in at.metric}["canary weight"] == "50 %"
    at.button(key="ro_promote").click().run()
    assert {m.label: m.value for m in at.metric}["state"] == "promoted"
    assert "ro_promote" not in [b.key for b in at.button]
    events = at.dataframe[-1].value
    assert events["action"].tolist()[:2] == ["promote", "step"] and events["weight"].tolist()[1] == 50
    assert Hub(hubdata.url, progress=False).aliases("other/roll")["prod"] == "1.1.0"


def test_rollout_actions_are_hidden_without_write_scope(hubdata):
    at = app(hubdata, "pages/rollouts.py", token="", ref="other/roll")
    assert not [b for b in at.button if b.key and b.key.startswith("ro_")]
    assert any("Sign in with a token that may write" in c.value for c in at.caption)
