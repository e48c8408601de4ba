"""Browse: search and filter adapters; one card each; pages of results through the API's cursor."""

from __future__ import annotations

import streamlit as st

from adapterhub.web import state, views

PAGE_SIZE = 12


def filters() -> dict:
    query = st.text_input("Search", placeholder="name, description or tag", key="q")
    cols = st.columns(6)
    chosen = {
        "q": query,
        "base_model": cols[0].text_input("Base model", key="f_base"),
        "method": cols[1].selectbox("Method", ["", *views.METHODS], key="f_method",
                                    format_func=lambda m: m or "any"),
        "task": cols[2].selectbox("Task", ["", *views.TASKS], key="f_task", format_func=lambda t: t or "any"),
        "tag": cols[3].text_input("Tag", key="f_tag"),
        "namespace": cols[4].text_input("Namespace", key="f_ns"),
    }
    chosen["sort"] = views.SORTS[cols[5].selectbox("Sort", list(views.SORTS), key="f_sort")]
    return chosen


def card(summary: dict) -> None:
    ref = f"{summary['namespace']}/{summary['name']}"
    with st.container(border=True):
        st.markdown(f"**{ref}**")
        st.caption(summary.get("description") or "")
        facts = views.card_facts(summary)
        st.markdown("  \n".join(f"{k}: `{v}`" for k, v in facts.items()))
        if st.button(f"Open {ref}", key=f"open-{ref}", width="stretch"):
            state.open_adapter(ref)


def pager(next_cursor: str | None) -> None:
    """Previous/next over the cursor stack kept in the session (reset when the filters change)."""
    stack = st.session_state["browse_cursors"]
    left, mid, right = st.columns([1, 2, 1])
    if left.button("Previous", key="browse_prev", disabled=len(stack) == 1):
        stack.pop()
        st.rerun()
    mid.caption(f"page {len(stack)}")
    if right.button("Next", key="browse_next", disabled=not next_cursor):
        stack.append(next_cursor)
        st.rerun()


st.title("Browse adapters")
chosen = filters()
if st.session_state.get("browse_filters") != chosen:
    st.session_state["browse_filters"], st.session_state["browse_cursors"] = chosen, [None]
with state.errors_shown():
    size = st.session_state.setdefault("browse_page_size", PAGE_SIZE)
    page = state.search_page(chosen, st.session_state["browse_cursors"][-1], size)
items = page["items"]
if not items:
    st.info("No adapter matches these filters.")
grid = st.columns(3)
for i, summary in enumerate(items):
    with grid[i % 3]:
        card(summary)
pager(page.get("next_cursor"))
