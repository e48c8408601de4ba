"""Compare: two versions of one adapter side by side: size, metrics, and the config diff."""

from __future__ import annotations

import streamlit as st

from adapterhub.format import CARD_FILE, CONFIG_FILE
from adapterhub.web import state, views

st.title("Compare versions")
with state.errors_shown():
    ref = state.ref_input()
    if not ref:
        st.info("Type a reference such as `acme/sentiment`, or open one from Browse.")
        st.stop()
    versions = state.versions(ref)
    if len(versions) < 2:
        st.info(f"{ref} has {len(versions)} version(s); comparing needs two.")
        st.stop()
    names = [v["version"] for v in versions]
    left, right = st.columns(2)
    a = versions[names.index(left.selectbox("Version A", names, index=1, key="cmp_a"))]
    b = versions[names.index(right.selectbox("Version B", names, index=0, key="cmp_b"))]
    for col, v in ((left, a), (right, b)):
        col.metric("size", views.human_size(v.get("size")))
        col.caption(f"{len(v.get('files', []))} files · {v.get('created_at', '')[:10]} · by {v.get('created_by') or '-'}"
                    + (" · yanked" if v.get("yanked") else ""))
    st.subheader("Metrics")
    metrics = views.metrics_side_by_side(a, b)
    if metrics.empty:
        st.caption("Neither version has metrics yet.")
    else:
        st.dataframe(metrics, hide_index=True, width="stretch")
    st.subheader(CONFIG_FILE)
    show_all = st.toggle("show unchanged keys", key="cmp_all")
    diff = views.config_diff(a.get("config") or {}, b.get("config") or {}, only_changed=not show_all)
    columns = {"a": f"A ({a['version']})", "b": f"B ({b['version']})"}
    if diff.empty:
        st.success("The two configs are identical.")
    else:
        st.dataframe(diff.rename(columns=columns), hide_index=True, width="stretch")
    st.subheader(CARD_FILE)
    card_diff = views.config_diff(a.get("card") or {}, b.get("card") or {}, only_changed=not show_all)
    if card_diff.empty:
        st.success("The two cards are identical.")
    else:
        st.dataframe(card_diff.rename(columns=columns), hide_index=True, width="stretch")
