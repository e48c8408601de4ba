"""Adapter: card and README (Markdown, never raw HTML), versions, aliases, files, config, metrics
over versions, every evaluation with its protocol and verification status, Reproduce (re-run the
card's figures or a recorded evaluation by its protocol, and record the re-run), usage snippets, and
the audit trail of alias moves."""

from __future__ import annotations

import streamlit as st

from adapterhub.errors import AdapterHubError
from adapterhub.web import engine, eval_views, state, views


def header(ref: str, summary: dict, aliases: dict) -> None:
    st.title(ref)
    if summary.get("description"):
        st.markdown(summary["description"])
    facts = views.card_facts(summary)
    best = facts.pop("best metric")
    facts.update([best.split(" ", 1)] if best != "-" else [("best metric", "-")])
    cols = st.columns(len(facts))
    for col, (name, value) in zip(cols, facts.items(), strict=True):
        col.metric(name, value)
    tags = ", ".join(summary.get("tags") or []) or "-"
    st.caption(f"task: {summary.get('task') or '-'} · tags: {tags} · license: {summary.get('license') or '-'}")
    if aliases:
        st.markdown("Aliases: " + " · ".join(f"`{a}` → `{v}`" for a, v in sorted(aliases.items())))


def overview(ref: str, versions: list[dict], version: dict) -> None:
    st.subheader("Versions")
    st.dataframe(views.versions_table(versions), hide_index=True, width="stretch")
    metrics = views.metrics_over_versions(versions)
    st.subheader("Metrics over versions")
    if metrics.empty:
        st.info("No metrics recorded yet: evaluate a version on the Evaluate page.")
    else:
        st.line_chart(metrics)
        evaluations = eval_views.evaluations_table(versions)
        if not evaluations.empty:
            st.dataframe(evaluations, hide_index=True, width="stretch")
    reproduce(ref, version)
    readme = next((f for f in version.get("files", []) if f["path"].lower() == "readme.md"), None)
    st.subheader("Card")
    if readme:
        st.markdown(views.card_body(state.file_text(ref, version["version"], readme["path"])), unsafe_allow_html=False)
    elif version.get("card"):
        st.json(version["card"], expanded=False)
    else:
        st.caption("This version has no README.md and no adapterhub.json.")


def rerun(exact: str, item: dict) -> dict:
    """Re-run one Reproduce item; a failure is kept as a line (one item must not stop the page)."""
    try:
        with st.spinner(f"re-running {item['label']}"):
            return {"runs": engine.reproduce(state.hub().pull(exact), item["evaluation"], pull=state.hub().pull)}
    except AdapterHubError as exc:
        return {"error": str(exc)}
    except Exception as exc:  # the base model or data of a protocol may be missing here: say so, go on
        return {"error": f"{type(exc).__name__}: {exc}"}


def rerun_outcome(exact: str, item: dict, outcome: dict) -> None:
    if outcome.get("error"):
        st.error(f"could not re-run {item['label']}: {outcome['error']}")
        return
    for run in outcome["runs"]:
        figures = ", ".join(f"{k} {views.fmt(v)}" for k, v in run["result"]["metrics"].items())
        if run["reproduced"]:
            st.success(f"reproduced: {figures}")
        else:
            st.warning("NOT reproduced: " + figures + "\n\n" + "\n".join(f"- {d}" for d in run["differences"]))
    ns = exact.split("/")[0]
    if outcome.get("posted"):
        st.success(f"recorded on {exact} as " + ", ".join(f"#{i}" for i in outcome["posted"]))
    elif not state.can_write(ns):
        st.caption(f"Sign in with a token that may write to `{ns}` to record this re-run in the registry.")
    elif st.button(f"Record this re-run on {exact}", key=f"rp_post_{item['key']}"):
        outcome["posted"] = [state.hub().post_eval(exact, **eval_views.rerun_record(item["of"], item["dataset"], run))["id"]
                             for run in outcome["runs"]]
        state.refresh()
        st.rerun()


def reproduce(ref: str, version: dict) -> None:
    """A Reproduce button for the card's figures and for each evaluation of this version with a protocol."""
    items = eval_views.reproducible(version)
    if not items:
        return
    st.subheader(f"Reproduce {version['version']}")
    st.caption("Re-run a recorded evaluation exactly by its protocol. A classification reproduces when every "
               "prediction is the same (an identical confusion matrix), a perplexity within 1e-4 relative.")
    exact = f"{ref}@{version['version']}"
    outcomes = st.session_state.setdefault("rp_outcomes", {})
    for item in items:
        left, right = st.columns([6, 1])
        left.text(item["label"])  # names from the registry: shown as text, never as Markdown
        if right.button("Reproduce", key=f"rp_{item['key']}"):
            outcomes[(exact, item["key"])] = rerun(exact, item)
        if (exact, item["key"]) in outcomes:
            rerun_outcome(exact, item, outcomes[(exact, item["key"])])


def details(version: dict) -> None:
    st.caption(views.engines_line(version))
    for warning in version.get("warnings") or []:
        st.warning(warning)
    st.subheader(f"Files of {version['version']}")
    st.dataframe(views.files_table(version), hide_index=True, width="stretch")
    left, right = st.columns(2)
    left.markdown("**adapter_config.json**")
    left.json(version.get("config") or {})
    right.markdown("**adapterhub.json**")
    right.json(version.get("card") or {}, expanded=False)


def usage(ref: str, version: dict, summary: dict) -> None:
    for title, (language, code) in views.snippets(state.url(), ref, version["version"], summary).items():
        st.markdown(f"**{title}**")
        st.code(code, language=language)


with state.errors_shown():
    ref = state.ref_input()
    if not ref:
        st.info("Type a reference such as `acme/sentiment`, or open one from Browse.")
        st.stop()
    summary, versions, aliases = state.summary(ref), state.versions(ref), state.aliases(ref)
    header(ref, summary, aliases)
    if not versions:
        st.info("No version pushed yet.")
        st.stop()
    labels = [v["version"] + (" (yanked)" if v.get("yanked") else "") for v in versions]
    picked = st.selectbox("Version", range(len(versions)), format_func=labels.__getitem__)
    version = versions[picked]
    tabs = st.tabs(["Overview", "Files & config", "Use it", "Alias history"])
    with tabs[0]:
        overview(ref, versions, version)
    with tabs[1]:
        details(version)
    with tabs[2]:
        usage(ref, version, summary)
    with tabs[3]:
        moves = views.alias_moves(state.audit(ref))
        if moves.empty:
            st.caption("No alias has moved yet.")
        else:
            st.dataframe(moves, hide_index=True, width="stretch")
