"""Evaluate: pick a version; the form starts from the protocol its card's figures were scored with
(base, data and seeded sample, max_length, batch size, scoring), every field editable; run with
progress; show the metrics, the confusion matrix and the protocol (what differs from the card's is
recorded as an override); post the result with its protocol to the registry with the signed-in token.
A card without a protocol (an adapter made elsewhere) still evaluates: the user gives base and data."""

from __future__ import annotations

import streamlit as st

from adapterhub.eval_protocol import SCORINGS, EvalProtocol
from adapterhub.web import engine, eval_views, state, views

LOCAL = "local folder ..."
UPLOAD = "upload a file ..."
KEYS = {"sample": "ev_sample", "sample_seed": "ev_sample_seed", "max_length": "ev_max_length",
        "batch_size": "ev_batch_size", "scoring": "ev_scoring"}


def shown_base(base: str | None) -> str:
    """The base as the form shows it: a catalogue name when the catalogue knows it (by Hub id or name)."""
    from adapterhub.compose.workflows.catalog import catalogue_entry

    entry = catalogue_entry(base) if base else None
    return entry.name if entry else (base or "")


def defaults_for(card: dict, protocol: EvalProtocol | None, base_model: str | None, options: list[str]) -> dict:
    if protocol is not None:
        defaults = eval_views.form_defaults(protocol, base=base_model or "")
        defaults["base"] = shown_base(defaults["base"])
        return defaults
    from adapterhub.compose.workflows.catalog import CATALOGUE

    recipe = card.get("recipe") if isinstance(card.get("recipe"), dict) else {}
    named = shown_base(base_model)  # the registry records the Hub id; only a catalogue base is preselected
    length = recipe.get("max_length")
    return eval_views.form_defaults(None, base=named if named in CATALOGUE else "",
                                    data=options[views.card_dataset_index(card, options)],
                                    max_length=length if isinstance(length, int) and length > 0 else None)


def prefill(key: tuple, defaults: dict, options: list[str]) -> None:
    """Put the defaults in the form when the version changes (the fields stay editable)."""
    from adapterhub.compose.workflows.catalog import CATALOGUE

    ss = st.session_state
    if ss.get("ev_prefilled") == key and all(k in ss for k in KEYS.values()):
        return
    ss["ev_prefilled"] = key
    catalogued = defaults["base"] in CATALOGUE
    ss["ev_base"] = defaults["base"] if catalogued else LOCAL
    ss["ev_base_path"] = "" if catalogued else defaults["base"]
    ss["ev_data"] = defaults["data"] if defaults["data"] in options else options[0]
    for name, widget in KEYS.items():
        ss[widget] = defaults[name]


def base_choice() -> str:
    from adapterhub.compose.workflows.catalog import CATALOGUE

    picked = st.selectbox("Base model", [*CATALOGUE, LOCAL], key="ev_base",
                          help="A catalogue model (installed from PyPI) or a local transformers folder.")
    return st.text_input("Base model folder", key="ev_base_path").strip() if picked == LOCAL else picked


def data_choice(options: list[str], card_ref: str | None) -> tuple[str | None, str | None]:
    """(what to load, the name to record it under: None for the protocol's own), or (None, None) until chosen."""
    picked = st.selectbox("Evaluation data", options, key="ev_data",
                          format_func=lambda o: f"{o} (the card's)" if o == card_ref else o,
                          help="The card's data is preselected; or a built-in held-out set, or your own file.")
    if picked != UPLOAD:
        return picked, None
    upload = st.file_uploader("JSONL or CSV with text (and label)", type=["jsonl", "csv", "ndjson"], key="ev_upload")
    if upload is None:
        return None, None
    return str(engine.save_upload(upload.name, upload.getvalue())), upload.name


def settings_inputs() -> dict:
    cols = st.columns(5)
    return {
        "sample": cols[0].number_input("Sample (0: every example)", min_value=0, step=1, key="ev_sample",
                                       help="Score a seeded sample of this many examples, kept in file order."),
        "sample_seed": cols[1].number_input("Sample seed", min_value=0, step=1, key="ev_sample_seed"),
        "max_length": cols[2].number_input("Max length (tokens)", min_value=1, step=1, key="ev_max_length"),
        "batch_size": cols[3].number_input("Batch size", min_value=1, step=1, key="ev_batch_size"),
        "scoring": cols[4].selectbox("Scoring", [eval_views.AUTO, *SCORINGS], key="ev_scoring",
                                     format_func=lambda s: s or "by the adapter's task",
                                     help="; ".join(f"{k}: {v}" for k, v in SCORINGS.items())),
    }


def run(exact: str, settings: dict) -> dict:
    bar = st.progress(0.0, text=f"pulling {exact}")
    folder = state.hub().pull(exact)
    result = engine.evaluate(folder, **settings, pull=state.hub().pull,
                             on_stage=lambda text, f: bar.progress(f, text=text))
    bar.progress(1.0, text=f"done: {result.n_examples} examples")
    return result.to_dict()


def show(result: dict) -> None:
    cols = st.columns(len(result["metrics"]) + 1)
    cols[0].metric("examples", result["n_examples"])
    for col, (name, value) in zip(cols[1:], result["metrics"].items(), strict=True):
        col.metric(name, views.fmt(value))
    st.caption(f"dataset {result['dataset_name']} · sha256 {result['dataset_sha256']}")
    facts = eval_views.protocol_facts(result.get("protocol"))
    if facts:
        st.markdown("  \n".join(f"**{name}**: `{value}`" for name, value in facts.items()))
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
        state.hub().post_eval(result["exact"], result["dataset_name"], result["dataset_sha256"], result["metrics"],
                              protocol=result.get("protocol"), confusion_matrix=result.get("confusion_matrix"))
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
    protocol, problem = eval_views.card_protocol(cards[version])
    from adapterhub.compose.workflows.data import BUILTIN

    card_ref = protocol.data.ref if protocol else None
    options = eval_views.data_options(card_ref, list(BUILTIN), UPLOAD)
    defaults = defaults_for(cards[version], protocol, state.summary(ref).get("base_model"), options)
    prefill((ref, version), defaults, options)
    if protocol is not None:
        st.caption(f"Prefilled from the protocol the card's figures were scored with: {protocol.describe()}. "
                   "Whatever you change is recorded as an override.")
    else:
        st.info(problem or f"The card of {version} records no evaluation protocol: choose the base model and data.")
    base = base_choice()
    data, record_as = data_choice(options, card_ref)
    chosen = {"base": base, "data": data or "", **settings_inputs()}
    exact = f"{ref}@{version}"
    if st.button("Run evaluation", type="primary", disabled=not (base and data), key="ev_run"):
        settings = eval_views.run_settings(defaults, chosen, from_card=protocol is not None)
        result = run(exact, settings)
        name = record_as or EvalProtocol.from_dict(result["protocol"]).data.label()  # the name it is posted under
        st.session_state["ev_result"] = {**result, "exact": exact, "dataset_name": name}
    result = st.session_state.get("ev_result")
    if result and result["exact"] == exact:
        show(result)
        post(result)
