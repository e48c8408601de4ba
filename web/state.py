"""Session state, the cached registry client and cached reads, sign-in, and the one error boundary.

Why here: every page meets the registry through these few functions, so a client is built once per
(URL, token) (``st.cache_resource``), fetched data is cached briefly (``st.cache_data``), and every
typed error becomes one readable ``st.error`` line instead of a traceback.

>>> from adapterhub.web import state                  # doctest: +SKIP
>>> with state.errors_shown():                         # doctest: +SKIP
...     st.write(state.versions("acme/sentiment"))
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import streamlit as st

from adapterhub.errors import AdapterHubError, AuthenticationError
from adapterhub.registry import config
from adapterhub.registry.client import Hub
from adapterhub.registry.reference import parse_reference

TTL = 30  # seconds fetched data stays fresh
WRITE_SCOPES = ("write", "admin")


# ---------------------------------------------------------------------- session
def init() -> None:
    """Defaults for this browser session (idempotent; pages call it so each also runs alone)."""
    ss = st.session_state
    ss.setdefault("url", config.resolve_url(os.environ.get("ADAPTERHUB_URL")))
    # a UI bound to loopback is the local user's: it starts signed in with the CLI's token; a shared
    # one (``adapterhub ui --host 0.0.0.0`` sets ADAPTERHUB_UI_SHARED=1) starts anonymous
    shared = os.environ.get("ADAPTERHUB_UI_SHARED") == "1"
    ss.setdefault("token", "" if shared else config.resolve_token(None) or "")
    ss.setdefault("ref", "")


def url() -> str:
    init()
    return st.session_state["url"]


def token() -> str:
    init()
    return st.session_state["token"]


@st.cache_resource(show_spinner=False)
def _hub(url: str, token: str) -> Hub:
    hub = Hub(url, token or None, progress=False)
    if not token:  # anonymous means anonymous: no fallback to a token stored on the server's machine
        hub.token = None
        hub._http.headers.pop("Authorization", None)  # noqa: SLF001
    return hub


def hub() -> Hub:
    """The client for the session's registry and token (one per pair, shared across reruns)."""
    return _hub(url(), token())


# ---------------------------------------------------------------------- identity
@st.cache_data(ttl=TTL, show_spinner=False)
def _whoami(url: str, token: str) -> dict | None:
    if not token:
        return None
    try:
        return _hub(url, token).whoami()
    except AuthenticationError:
        return None


def whoami() -> dict | None:
    """``{"user", "is_admin", "scopes"}`` for the signed-in token, or None (anonymous or refused)."""
    return _whoami(url(), token())


def can_write(namespace: str) -> bool:
    """True when the signed-in token may write to ``namespace`` (the server still checks)."""
    me = whoami()
    if not me:
        return False
    if me.get("is_admin"):
        return True
    return any(s.get("scope") in WRITE_SCOPES and s.get("namespace") in (namespace, "*")
               for s in me.get("scopes", []))


def sign_in(new_token: str) -> str | None:
    """Switch the session to ``new_token``; returns an error line when the registry refuses it."""
    new_token = new_token.strip()
    if new_token:
        try:
            _hub(url(), new_token).whoami()
        except AuthenticationError as exc:
            return str(exc)
    st.session_state["token"] = new_token
    return None


# ---------------------------------------------------------------------- errors
@contextlib.contextmanager
def errors_shown() -> Iterator[None]:
    """Show any error in the block as one readable line and stop the page (never a traceback).

    Streamlit's own control flow (``st.stop``, reruns, page switches) derives from BaseException
    and passes through untouched.
    """
    try:
        yield
    except AdapterHubError as exc:
        st.error(str(exc))
        st.stop()
    except Exception as exc:  # noqa: BLE001 - the UI's last line of defence
        st.error(f"{type(exc).__name__}: {exc}")
        st.stop()


# ---------------------------------------------------------------------- reads the client does not wrap yet
def _get(hub: Hub, path: str, params: dict | None = None, ref: str | None = None):
    """GET ``/api/v1/{path}`` with the client's auth, typed errors (with "did you mean" for ``ref``)
    and transport handling. Cursor pages, the audit log and raw files have no ``Hub`` method yet."""
    return hub._request("GET", path, params=params, ref=parse_reference(ref) if ref else None)  # noqa: SLF001


@st.cache_data(ttl=TTL, show_spinner=False)
def _search_page(url: str, token: str, filters: tuple, cursor: str | None, limit: int) -> dict:
    params = {k: v for k, v in filters if v not in (None, "")}
    params.update(limit=limit, **({"cursor": cursor} if cursor else {}))
    return _get(_hub(url, token), "adapters", params).json()


def search_page(filters: dict, cursor: str | None = None, limit: int = 12) -> dict:
    """``{"items": [AdapterSummary], "next_cursor": str | None}`` for the filters (API.md names)."""
    return _search_page(url(), token(), tuple(sorted(filters.items())), cursor, limit)


@st.cache_data(ttl=TTL, show_spinner=False)
def _summary(url: str, token: str, ref: str) -> dict:
    r = parse_reference(ref)
    return _get(_hub(url, token), f"adapters/{r.namespace}/{r.name}", ref=ref).json()


def summary(ref: str) -> dict:
    return _summary(url(), token(), ref)


@st.cache_data(ttl=TTL, show_spinner=False)
def _versions(url: str, token: str, ref: str) -> list[dict]:
    return _hub(url, token).versions(ref)


def versions(ref: str) -> list[dict]:
    """Every version of the adapter, newest first, with files, config, card and evaluations."""
    return _versions(url(), token(), ref)


@st.cache_data(ttl=TTL, show_spinner=False)
def _aliases(url: str, token: str, ref: str) -> dict:
    return _hub(url, token).aliases(ref)


def aliases(ref: str) -> dict[str, str]:
    return _aliases(url(), token(), ref)


@st.cache_data(ttl=TTL, show_spinner=False)
def _audit(url: str, token: str, ref: str) -> list[dict]:
    r = parse_reference(ref)
    return _get(_hub(url, token), f"adapters/{r.namespace}/{r.name}/audit").json()


def audit(ref: str) -> list[dict]:
    return _audit(url(), token(), ref)


@st.cache_data(ttl=TTL, show_spinner=False)
def _file_text(url: str, token: str, ref: str, version: str, path: str) -> str:
    r = parse_reference(ref)
    response = _get(_hub(url, token), f"adapters/{r.namespace}/{r.name}/versions/{version}/files/{path}")
    return response.content.decode("utf-8", errors="replace")


def file_text(ref: str, version: str, path: str) -> str:
    """A small text file of a version (the README), as text."""
    return _file_text(url(), token(), ref, version, path)


@st.cache_data(ttl=TTL, show_spinner=False)
def _rollouts(url: str, token: str, ref: str) -> list[dict]:
    return _hub(url, token).rollouts(ref)


def rollouts(ref: str) -> list[dict]:
    """Every rollout of the adapter, newest first."""
    return _rollouts(url(), token(), ref)


def refresh() -> None:
    """Forget cached reads (after a write, so the page shows it)."""
    st.cache_data.clear()


def current_ref() -> str:
    """The adapter the session is looking at: ``?ref=`` in the URL, else the last one opened."""
    init()
    ref = st.query_params.get("ref") or st.session_state["ref"]
    st.session_state["ref"] = ref
    return ref


def ref_input(label: str = "Adapter") -> str:
    """A text box holding the session's adapter (``namespace/name``), kept in step with ``?ref=``.

    Returns the canonical ``namespace/name`` or "" when empty; a malformed reference raises
    ``InvalidReferenceError`` (inside ``errors_shown`` that is one readable line).
    """
    wanted = current_ref()
    if st.session_state.get("ref_seen") != wanted or "ref_input" not in st.session_state:
        st.session_state["ref_input"] = st.session_state["ref_seen"] = wanted
    typed = st.text_input(label, key="ref_input", placeholder="namespace/name").strip()
    if not typed:
        return ""
    ref = parse_reference(typed).repo_id
    st.session_state["ref"] = st.session_state["ref_seen"] = ref
    st.query_params["ref"] = ref
    return ref


def open_adapter(ref: str, page: str = "pages/adapter.py") -> None:
    """Go to an adapter page (``st.switch_page``), remembering the reference."""
    st.session_state["ref"] = ref
    st.switch_page(page, query_params={"ref": ref})
