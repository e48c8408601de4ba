"""Compose playground: a base model plus registry adapters, single, stacked, averaged, fused or
routed; type text and see the base and the adapted output side by side (label probabilities, or
generated text), and for Fuse/Route the per-layer fusion weights or router choices as a heatmap."""

from __future__ import annotations

import streamlit as st

from adapterhub.vocab import CLASSIFICATION
from adapterhub.web import engine, state, views

LOCAL = "local folder ..."
MODE_LABELS = {"single": "single adapter", "stack": "Stack (in order)", "average": "Average (equal weights)",
               "fuse": "Fuse (AdapterFusion)", "route": "Route (mixture of experts)"}
UNTRAINED = {
    "Fuse": "Untrained fusion: fresh fusion layers attend equally to every adapter, so this is the plain "
            "average of their outputs. Give a trained fusion folder, recipe or reference to see learned weights.",
    "Route": "Untrained router: freshly initialised at random, so its choice of expert per token is "
             "arbitrary. Give a trained router folder, recipe or reference to see learned routing.",
}
HEATMAP_TITLES = {"Fuse": "Fusion weights: mean attention over the adapters, per site",
                  "Route": "Router choices: share of tokens sent to each expert (first choice), per site"}


@st.cache_resource(show_spinner="loading the base model and adapters ...", max_entries=2)
def playground(base: str, refs: tuple[str, ...], source: str, url: str, token: str) -> engine.Playground:
    hub = state._hub(url, token)
    folder = engine.source_folder(source, hub.pull) if source else None
    return engine.load_playground(base, {engine.adapter_name(r): hub.pull(r) for r in refs}, folder, pull=hub.pull)


def show(out: dict) -> None:
    left, right = st.columns(2)
    left.markdown("**Base model**")
    right.markdown("**With adapters**")
    if out["task"] == CLASSIFICATION.name:
        frame = views.probabilities_frame(out["base"], out["adapted"])
        for col, side in ((left, "base"), (right, "adapted")):
            top = frame[side].idxmax()
            col.metric("prediction", top, f"p = {frame[side][top]:.3f}", delta_color="off")
            col.bar_chart(frame[side], horizontal=True)
        st.dataframe(frame, width="stretch")
    else:
        left.code(out["base"] or "(nothing generated)", language=None, wrap_lines=True)
        right.code(out["adapted"] or "(nothing generated)", language=None, wrap_lines=True)
    st.caption(f"composition: `{out['composition']}`")
    for entry in out["blocks"]:
        show_block(entry)


def show_block(entry: dict) -> None:
    st.subheader(HEATMAP_TITLES[entry["kind"]])
    if not entry["trained"]:
        st.warning(UNTRAINED[entry["kind"]], icon=":material/science:")
    frame = views.block_frame(entry)
    st.altair_chart(views.heatmap_chart(frame, entry["value"]), width="stretch")
    st.dataframe(frame, width="stretch")


st.title("Compose playground")
with state.errors_shown():
    from adapterhub.compose.workflows.catalog import CATALOGUE, catalogue_entry

    cols = st.columns([1, 2])
    typed = cols[1].text_input("Adapters (references, comma separated)", key="pg_refs",
                               value=state.current_ref(), placeholder="acme/sentiment, acme/news@1.0.0")
    refs = tuple(r.strip() for r in typed.split(",") if r.strip())
    readable = state.readable(refs)  # every reference, not only the first, must be the session's to read
    first = readable[0].get("base_model") if readable else None
    entry = catalogue_entry(first) if first else None  # the registry records the Hub id
    options, index = views.base_choices(entry.name if entry else first, list(CATALOGUE), LOCAL)
    picked = cols[0].selectbox("Base model", options, index=index, key="pg_base")
    base = cols[0].text_input("Base model folder", key="pg_base_path").strip() if picked == LOCAL else picked
    mode = st.radio("Composition", engine.MODES, horizontal=True, key="pg_mode", format_func=MODE_LABELS.get)
    source = ""
    if mode in engine.LAYER_MODES:
        source = st.text_input(
            "Trained layers (optional)", key="pg_source",
            placeholder="a fusion/router folder, a composition recipe folder, or a registry reference",
            help="Empty: fresh, untrained layers over the adapters above. A fusion or router folder names "
                 "its adapters: the ones above take those names in order. A recipe brings its own adapters.",
        ).strip()
    text = st.text_area("Input text", key="pg_text", placeholder="Type a sentence to classify or a prompt to continue")
    if st.button("Run", type="primary", disabled=not (base and (refs or source))):
        pg = playground(base, refs, source, state.url(), state.read_token())
        st.session_state["pg_out"] = engine.predict(pg, text, mode)
    if st.session_state.get("pg_out"):
        show(st.session_state["pg_out"])
