"""Compose playground: a base model plus registry adapters, single or stacked; type text and see
the base and the adapted output side by side (label probabilities, or generated text)."""

from __future__ import annotations

import streamlit as st

from adapterhub.web import engine, state, views

LOCAL = "local folder ..."


@st.cache_resource(show_spinner="loading the base model and adapters ...", max_entries=2)
def playground(base: str, refs: tuple[str, ...], url: str, token: str) -> engine.Playground:
    hub = state._hub(url, token)
    return engine.load_playground(base, {engine.adapter_name(r): hub.pull(r) for r in refs})


def show(out: dict) -> None:
    left, right = st.columns(2)
    left.markdown("**Base model**")
    right.markdown("**With adapters**")
    if out["task"] == "classification":
        frame = views.probabilities_frame(out["base"], out["adapted"])
        for col, side in ((left, "base"), (right, "adapted")):
            top = frame[side].idxmax()
            col.metric("prediction", top, f"p = {frame[side][top]:.3f}", delta_color="off")
            col.bar_chart(frame[side], horizontal=True)
        st.dataframe(frame, width="stretch")
    else:
        left.code(out["base"] or "(nothing generated)", language=None, wrap_lines=True)
        right.code(out["adapted"] or "(nothing generated)", language=None, wrap_lines=True)


st.title("Compose playground")
with state.errors_shown():
    from adapterhub.compose.catalog import CATALOGUE

    cols = st.columns([1, 2])
    typed = cols[1].text_input("Adapters (references, comma separated)", key="pg_refs",
                               value=state.current_ref(), placeholder="acme/sentiment, acme/news@1.0.0")
    refs = tuple(r.strip() for r in typed.split(",") if r.strip())
    first = state.summary(refs[0]).get("base_model") if refs else None
    options, index = views.base_choices(first, list(CATALOGUE), LOCAL)
    picked = cols[0].selectbox("Base model", options, index=index, key="pg_base")
    base = cols[0].text_input("Base model folder", key="pg_base_path").strip() if picked == LOCAL else picked
    mode = st.radio("Composition", engine.MODES, horizontal=True, key="pg_mode",
                    format_func={"single": "single adapter", "stack": "Stack (in order)",
                                 "average": "Average (equal weights)"}.get)
    text = st.text_area("Input text", key="pg_text", placeholder="Type a sentence to classify or a prompt to continue")
    if st.button("Run", type="primary", disabled=not (base and refs)):
        pg = playground(base, refs, state.url(), state.token())
        names = [engine.adapter_name(r) for r in refs]
        st.session_state["pg_out"] = engine.predict(pg, text, mode, names)
    if st.session_state.get("pg_out"):
        show(st.session_state["pg_out"])
