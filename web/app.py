"""The Streamlit entry script: sidebar sign-in and the page list (``adapterhub ui`` runs it).

Run by hand with ``ADAPTERHUB_URL=http://127.0.0.1:8000 streamlit run web/app.py``.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from adapterhub.web import state

HERE = Path(__file__).parent
PAGES = [
    st.Page(HERE / "pages" / "browse.py", title="Browse", icon=":material/search:", default=True),
    st.Page(HERE / "pages" / "adapter.py", title="Adapter", icon=":material/extension:"),
    st.Page(HERE / "pages" / "compare.py", title="Compare", icon=":material/compare_arrows:"),
    st.Page(HERE / "pages" / "evaluate.py", title="Evaluate", icon=":material/fact_check:"),
    st.Page(HERE / "pages" / "playground.py", title="Playground", icon=":material/science:"),
    st.Page(HERE / "pages" / "rollouts.py", title="Rollouts", icon=":material/call_split:"),
]


def sidebar() -> None:
    state.init()
    with st.sidebar:
        st.caption(f"registry: {state.url()}")
        me = state.whoami()
        if me:
            scopes = ", ".join(f"{s['scope']}:{s['namespace']}" for s in me.get("scopes", []))
            st.success(f"signed in as **{me['user']}**" + (" (admin)" if me.get("is_admin") else ""))
            st.caption(f"scopes: {scopes or '-'}")
        elif state.token():
            st.warning("the registry does not accept this token (an old ADAPTERHUB_TOKEN?); browsing anonymously: "
                       "public adapters only. Sign in with another token, or sign out.")
        new = st.text_input("Token", type="password", placeholder="ah_...", key="token_input")
        col_in, col_out = st.columns(2)
        signed_in = col_in.button("Sign in", key="sign_in")
        signed_out = col_out.button("Sign out", key="sign_out", disabled=not state.token())
        if signed_in:
            error = state.sign_in(new)
            if error:
                st.error(error)
            else:
                st.rerun()
        if signed_out:
            state.sign_in("")
            st.rerun()


st.set_page_config(page_title="adapterhub", page_icon=":material/extension:", layout="wide")
page = st.navigation(PAGES)
sidebar()
page.run()
