"""Rollouts: an alias moving from its stable version to a canary: the split, per-arm outcomes,
step / pause / resume / promote / rollback for writers, and the history."""

from __future__ import annotations

import streamlit as st

from adapterhub.web import state, views

OPEN = ("active", "paused")


def summary(r: dict) -> None:
    cols = st.columns(5)
    cols[0].metric("stable", r["stable_version"])
    cols[1].metric("canary", r["canary_version"])
    cols[2].metric("canary weight", f"{r['weight']:g} %")
    cols[3].metric("state", r["state"])
    cols[4].metric("next step", f"{r['next_step']:g} %" if r.get("next_step") is not None else "-")
    if r.get("reason"):
        st.caption(f"last transition: {r['reason']}")


def outcomes(r: dict) -> None:
    arms = views.rollout_arms(r)
    st.dataframe(arms, width="stretch")
    charted = arms.loc[["error_rate", "latency_mean", "quality_mean"]].T.dropna(axis=1, how="all")
    if charted.empty:
        st.caption("No outcomes reported yet.")
        return
    cols = st.columns(len(charted.columns))
    for col, figure in zip(cols, charted.columns, strict=True):
        col.markdown(f"**{figure}**")
        col.bar_chart(charted[figure])


def actions(ref: str, r: dict) -> None:
    if not state.can_write(ref.split("/")[0]):
        st.caption("Sign in with a token that may write to this namespace to step, promote or roll back.")
        return
    if r["state"] not in OPEN:
        return
    hub, alias = state.hub(), r["alias"]
    cols = st.columns([2, 1, 1, 1, 1])
    weight = cols[0].number_input("canary weight %", 0.0, 100.0, float(r["weight"]), 5.0, key="ro_weight")
    done = None
    if cols[0].button("Set weight", key="ro_step"):
        done = hub.rollout_step(ref, alias, weight)
    pause_or_resume = "pause" if r["state"] == "active" else "resume"
    if cols[1].button(pause_or_resume.capitalize(), key="ro_pause"):
        done = getattr(hub, f"rollout_{pause_or_resume}")(ref, alias, reason="from the UI")
    if cols[2].button("Promote", key="ro_promote", type="primary"):
        done = hub.rollout_promote(ref, alias, reason="from the UI")
    if cols[3].button("Roll back", key="ro_rollback"):
        done = hub.rollout_rollback(ref, alias, reason="from the UI")
    if done is not None:
        state.refresh()
        st.rerun()


st.title("Rollouts")
with state.errors_shown():
    ref = state.ref_input()
    if not ref:
        st.info("Type a reference such as `acme/sentiment`, or open one from Browse.")
        st.stop()
    history = state.rollouts(ref)
    if not history:
        st.info(f"{ref} has no rollout yet: start one with `adapterhub rollout start {ref}:ALIAS VERSION`.")
        st.stop()
    aliases = list(dict.fromkeys(r["alias"] for r in history))
    alias = st.selectbox("Alias", aliases, key="ro_alias")
    current = state.hub().rollout_status(ref, alias)  # fresh: the registry applies its rules on read
    summary(current)
    outcomes(current)
    actions(ref, current)
    st.subheader("History")
    st.dataframe(views.rollout_history([r for r in history if r["alias"] == alias]), hide_index=True, width="stretch")
    events = views.rollout_events(state.audit(ref), current["id"])
    if not events.empty:
        st.dataframe(events, hide_index=True, width="stretch")
