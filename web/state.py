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
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import streamlit as st

from adapterhub.errors import AdapterHubError, AuthenticationError
from adapterhub.registry import config
from adapterhub.registry.client import Hub
from adapterhub.registry.reference import as_reference, parse_reference

TTL = 30  # seconds fetched data stays fresh
WRITE_SCOPES = ("write", "admin")


# ---------------------------------------------------------------------- session
def init() -> None:
    """Defaults for this browser session (idempotent; pages call it so each also runs alone)."""
    ss = st.session_state
    ss.setdefault("url", config.resolve_url(os.environ.get("ADAPTERHUB_URL")))
    # a UI bound to loopback is the local user's: it starts signed in with the CLI's token; a shared
    # one (``adapterhub ui --host 0.0.0.0`` sets ADAPTERHUB_UI_SHARED=1) starts anonymous
    ss.setdefault("token", "" if shared() else config.resolve_token(None) or "")
    ss.setdefault("ref", "")


def url() -> str:
    init()
    return st.session_state["url"]


def token() -> str:
    init()
    return st.session_state["token"]


def shared() -> bool:
    """True for a UI many people reach (``adapterhub ui --host 0.0.0.0``): one process, many principals."""
    return os.environ.get("ADAPTERHUB_UI_SHARED") == "1"


def cache_root(url: str, token: str) -> Path:
    """The cache folder pulls of this (registry, token) use.

    A shared UI gives each principal its own folder, named by a hash (never the token itself), so
    that what one visitor pulled is never on disk where another's pull looks, even if a check
    elsewhere fails. A local UI is the CLI's user and shares the CLI's cache.
    """
    if not shared():
        return config.cache_dir()
    return config.home() / "ui-cache" / hashlib.sha256(f"{url}\n{token}".encode()).hexdigest()[:32]


def _hub(url: str, token: str) -> Hub:
    return _hub_at(url, token, str(cache_root(url, token)))


@st.cache_resource(show_spinner=False)
def _hub_at(url: str, token: str, cache_dir: str) -> Hub:
    # anonymous means anonymous: no fallback to a token stored on the server's machine
    return Hub(url, token or None, cache_dir=cache_dir, progress=False, anonymous=not token)


def hub() -> Hub:
    """The client for the session's registry and token (one per pair, shared across reruns);
    anonymous when the registry refuses the token (`read_token`)."""
    return _hub(url(), read_token())


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


def read_token() -> str:
    """The token requests go out with: the session's, or "" (anonymous) when the registry refuses
    it, so that a stale token (an old ADAPTERHUB_TOKEN) still browses what is public while the
    sidebar warns, instead of every page showing the 401. An unreachable registry keeps the token:
    the page's own call then says what is wrong."""
    held = token()
    if not held:
        return ""
    try:
        return held if whoami() is not None else ""
    except AdapterHubError:
        return held


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


# ---------------------------------------------------------------------- cached reads
@st.cache_data(ttl=TTL, show_spinner=False)
def _search_page(url: str, token: str, filters: tuple, cursor: str | None, limit: int) -> dict:
    chosen = dict(filters)
    return _hub(url, token).search_page(chosen.pop("q", None), cursor=cursor, limit=limit, **chosen)


def search_page(filters: dict, cursor: str | None = None, limit: int = 12) -> dict:
    """``{"items": [AdapterSummary], "next_cursor": str | None}`` for the filters (API.md names)."""
    return _search_page(url(), read_token(), tuple(sorted(filters.items())), cursor, limit)


@st.cache_data(ttl=TTL, show_spinner=False)
def _summary(url: str, token: str, ref: str) -> dict:
    return _hub(url, token).summary(ref)


def summary(ref: str) -> dict:
    return _summary(url(), read_token(), ref)


def readable(refs: tuple[str, ...]) -> list[dict]:
    """The summary of every reference, in order: each one the session's token may read, or the
    typed error of the first it may not (one unreadable reference among several must not load)."""
    return [summary(as_reference(ref).repo_id) for ref in refs]


@st.cache_data(ttl=TTL, show_spinner=False)
def _versions(url: str, token: str, ref: str) -> list[dict]:
    return _hub(url, token).versions(ref)


def versions(ref: str) -> list[dict]:
    """Every version of the adapter, newest first, with files, config, card and evaluations."""
    return _versions(url(), read_token(), ref)


@st.cache_data(ttl=TTL, show_spinner=False)
def _aliases(url: str, token: str, ref: str) -> dict:
    return _hub(url, token).aliases(ref)


def aliases(ref: str) -> dict[str, str]:
    return _aliases(url(), read_token(), ref)


@st.cache_data(ttl=TTL, show_spinner=False)
def _audit(url: str, token: str, ref: str) -> list[dict]:
    return _hub(url, token).audit_log(ref)


def audit(ref: str) -> list[dict]:
    return _audit(url(), read_token(), ref)


@st.cache_data(ttl=TTL, show_spinner=False)
def _file_text(url: str, token: str, ref: str, version: str, path: str) -> str:
    data = _hub(url, token).read_file(f"{parse_reference(ref).repo_id}@{version}", path)
    return data.decode("utf-8", errors="replace")


def file_text(ref: str, version: str, path: str) -> str:
    """A small text file of a version (the README), as text."""
    return _file_text(url(), read_token(), ref, version, path)


@st.cache_data(ttl=TTL, show_spinner=False)
def _rollouts(url: str, token: str, ref: str) -> list[dict]:
    return _hub(url, token).rollouts(ref)


def rollouts(ref: str) -> list[dict]:
    """Every rollout of the adapter, newest first."""
    return _rollouts(url(), read_token(), ref)


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
