"""The Python client of the registry: HTTP (``/api/v1``, see ``registry/API.md``) plus the local cache.

Why one class: the CLI, the UI and the engine all meet the hub through `Hub`, so a reference
means the same thing everywhere, errors are the same typed `adapterhub.errors`, and every
pulled folder comes from the same verified cache. It imports neither the server nor torch.

>>> import adapterhub as ah
>>> hub = ah.Hub("http://127.0.0.1:8000", token="ah_...")            # doctest: +SKIP
>>> hub.push("out/", "acme/sentiment", version="1.3.0", alias="stable")  # doctest: +SKIP
>>> folder = hub.pull("acme/sentiment:stable")                        # doctest: +SKIP
>>> hub.resolve("acme/sentiment:prod", key="tenant-42").version       # doctest: +SKIP
'1.3.0'
"""

from __future__ import annotations

import contextlib
import difflib
import os
from collections.abc import Iterator
from urllib.parse import quote

import httpx

from adapterhub.errors import (
    AdapterHubError,
    AdapterNotFoundError,
    AuthenticationError,
    InvalidAdapterError,
    InvalidReferenceError,
    OfflineError,
    RegistryError,
)
from adapterhub.format import README_FILE
from adapterhub.registry import config, trust
from adapterhub.registry.cache import Cache, safe_relpath
from adapterhub.registry.client_bases import BasesMixin
from adapterhub.registry.client_identity import IdentityMixin
from adapterhub.registry.client_rollouts import RolloutsMixin
from adapterhub.registry.client_transfer import Resolution, TransferMixin
from adapterhub.registry.reference import Reference, as_reference, check_alias, check_version

KEEPALIVE_S = 2.0  # below uvicorn's default 5 s keep-alive timeout
IDEMPOTENT = frozenset({"GET", "HEAD"})
SEARCH_FILTERS = ("base_model", "method", "task", "tag", "namespace", "library", "sort")


_as_ref = as_reference


class Hub(IdentityMixin, TransferMixin, RolloutsMixin, BasesMixin):
    """A registry and the local cache beside it.

    ``url`` defaults to ``ADAPTERHUB_URL`` (else the local registry ``adapterhub up`` starts),
    ``token`` to ``ADAPTERHUB_TOKEN`` (else the one ``adapterhub login`` stored);
    ``anonymous=True`` sends no token at all (a shared UI must not borrow its host's login). With
    ``ADAPTERHUB_OFFLINE=1`` only `pull` and `resolve` work, from the cache.

    >>> with Hub() as hub:                                       # doctest: +SKIP
    ...     [a["name"] for a in hub.search("sentiment", method="lora")]
    ['sentiment']
    """

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        cache_dir: str | os.PathLike[str] | None = None,
        offline: bool | None = None,
        progress: bool | None = None,
        timeout: float = 60.0,
        anonymous: bool = False,
    ):
        self.url = config.resolve_url(url)
        self.token = None if anonymous else config.resolve_token(token)
        self.cache = Cache(cache_dir or config.cache_dir())
        self.offline = config.offline() if offline is None else offline
        self.progress = progress  # None: bars only when stderr is a terminal
        headers = {"User-Agent": "adapterhub-client"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        self._http = httpx.Client(
            base_url=f"{self.url}/api/v1/", headers=headers, timeout=httpx.Timeout(timeout, connect=10.0),
            follow_redirects=True,  # file downloads may redirect to a presigned bucket URL
            # idle connections are dropped before the server's own 5 s keep-alive ends, so a request
            # is never sent down a connection the server is closing at that moment
            limits=httpx.Limits(keepalive_expiry=KEEPALIVE_S),
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Hub:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Hub(url={self.url!r}, offline={self.offline})"

    # -- browsing ----------------------------------------------------------------------------
    def search(
        self,
        query: str | None = None,
        *,
        base_model: str | None = None,
        method: str | None = None,
        task: str | None = None,
        tag: str | None = None,
        namespace: str | None = None,
        sort: str | None = None,
        limit: int = 20,
        library: str | None = None,
    ) -> list[dict]:
        """Adapter summaries matching every filter given (``sort``: newest, downloads, metric:<name>;
        ``library``: ``peft`` or ``adapter-transformers``, the library that loads the folder)."""
        return self.search_page(query, limit=limit, base_model=base_model, method=method, task=task, tag=tag,
                                namespace=namespace, library=library, sort=sort)["items"][:limit]

    def search_page(self, query: str | None = None, *, cursor: str | None = None, limit: int = 20,
                    **filters: str | None) -> dict:
        """One page of `search`: ``{"items": [AdapterSummary], "next_cursor": str | None}``.

        ``filters`` are `search`'s keywords; hand ``next_cursor`` back as ``cursor`` for the next
        page (a pager keeps the cursors it was given to go back). The cursor is the registry's
        opaque keyset position, so pages neither repeat nor skip while adapters are added.
        """
        unknown = sorted(set(filters) - set(SEARCH_FILTERS))
        if unknown:
            raise TypeError(f"search_page() got unknown filter {unknown[0]!r}; known: {', '.join(SEARCH_FILTERS)}")
        params = {"q": query, **filters, "limit": limit, "cursor": cursor}
        return self._request("GET", "adapters", params={k: v for k, v in params.items() if v not in (None, "")}).json()

    def iter_search(self, query: str | None = None, *, page_size: int = 100, **filters: str | None) -> Iterator[dict]:
        """Every matching summary, fetched page by page through the cursor (no cap at one page).

        >>> sum(1 for _ in hub.iter_search(namespace="acme"))        # doctest: +SKIP
        347
        """
        cursor = None
        while True:
            page = self.search_page(query, cursor=cursor, limit=page_size, **filters)
            yield from page["items"]
            cursor = page.get("next_cursor")
            if not cursor:
                return

    def summary(self, ref: str | Reference) -> dict:
        """The adapter's AdapterSummary alone (one request; `show` adds the resolved version)."""
        r = _as_ref(ref)
        return self._request("GET", self._adapter_path(r), ref=r).json()

    def show(self, ref: str | Reference) -> dict:
        """The adapter's summary plus ``"version"``: the version the reference resolves to (or None)."""
        r = _as_ref(ref)
        summary = self.summary(r)
        try:
            version = self.resolve(r).version
        except AdapterNotFoundError:
            if r.revision:
                raise
            return {**summary, "version": None}  # an adapter with no version yet
        return {**summary, "version": self._request("GET", f"{self._adapter_path(r)}/versions/{version}", ref=r).json()}

    def versions(self, ref: str | Reference) -> list[dict]:
        """Every version, newest first (semver order), with files, yank state and evaluations."""
        r = _as_ref(ref)
        return self._request("GET", f"{self._adapter_path(r)}/versions", ref=r).json()

    def read_file(self, ref: str | Reference, path: str) -> bytes:
        """One file of the version ``ref`` resolves to, as bytes, straight from the registry.

        For showing a README or a config without pulling the whole version into the cache
        (``pull`` is for using an adapter). An unknown path raises `AdapterNotFoundError`.

        >>> hub.read_file("acme/sentiment@1.3.0", "README.md").decode()[:8]   # doctest: +SKIP
        '# Sentim'
        """
        r = _as_ref(ref)
        try:
            safe_relpath(path)  # "..", "" or "\\" could reach another URL once the path is normalised
        except InvalidAdapterError:
            raise InvalidAdapterError(f"refusing file path {path!r}: give a path inside the version, "
                                      f"such as {README_FILE}") from None
        version = r.version or self.resolve(r).version
        return self._request("GET", f"{self._adapter_path(r)}/versions/{version}/files/{quote(path, safe='/')}",
                             ref=r).content

    def audit_log(self, ref: str | Reference) -> list[dict]:
        """Every change to the adapter, oldest first: ``[{"id", "at", "actor", "action", "details"}]``
        (``alias.set``, ``version.yank``, ``rollout.step``, ...). The log is append-only."""
        r = _as_ref(ref)
        return self._request("GET", f"{self._adapter_path(r)}/audit", ref=r).json()

    def evaluations(self, ref: str | Reference) -> list[dict]:
        """Every evaluation of the adapter (every version), oldest first, each with its ``version``,
        and its ``protocol``, ``confusion_matrix`` and ``verification`` (None when not recorded)."""
        r = _as_ref(ref)
        return self._request("GET", f"{self._adapter_path(r)}/evaluations", ref=r).json()

    # -- aliases -----------------------------------------------------------------------------
    def aliases(self, ref: str | Reference) -> dict[str, str]:
        r = _as_ref(ref)
        return self._request("GET", f"{self._adapter_path(r)}/aliases", ref=r).json()

    def set_alias(self, ref: str | Reference, alias: str, version: str) -> dict:
        """Point ``alias`` at ``version`` (creating or moving it); returns ``{"alias", "version"}``."""
        r = _as_ref(ref)
        path = f"{self._adapter_path(r)}/aliases/{check_alias(alias)}"
        return self._request("PUT", path, ref=r, json={"version": check_version(version)}).json()

    def delete_alias(self, ref: str | Reference, alias: str) -> None:
        r = _as_ref(ref)
        self._request("DELETE", f"{self._adapter_path(r)}/aliases/{check_alias(alias)}", ref=r)

    # -- resolution --------------------------------------------------------------------------
    def resolve(self, ref: str | Reference, key: str | None = None) -> Resolution:
        """The version a reference points to; with ``key``, the sticky arm of a running rollout."""
        r = _as_ref(ref)
        if self.offline:
            version, _ = self.cache.resolve_offline(r)
            manifest = self.cache.manifest(r.namespace, r.name, version) or {}
            return Resolution(r.namespace, r.name, version, manifest.get("commit"))
        suffix = f"@{r.version}" if r.version else (f":{r.alias}" if r.alias else "")
        params = {"ref": suffix, **({"key": key} if key is not None else {})}
        body = self._request("GET", f"{self._adapter_path(r)}/resolve", ref=r, params=params).json()
        # every name in the answer is held against r before it can become a cache path or a URL
        return Resolution(*trust.checked_resolution(r, body), body.get("arm") or "stable", body.get("rollout_id"))

    # -- writes ------------------------------------------------------------------------------
    def post_eval(self, ref: str | Reference, dataset: str, dataset_sha256: str, metrics: dict, *,
                  protocol: dict | None = None, confusion_matrix: list[list[int]] | None = None,
                  verification: dict | None = None) -> dict:
        """Record an evaluation of the version ``ref`` resolves to; returns the EvaluationOut.

        ``protocol`` is how it was run (`adapterhub.eval_protocol.EvalProtocol.to_dict()`),
        ``confusion_matrix`` its counts (rows true, columns predicted, in ``protocol["labels"]``
        order), ``verification`` what a re-run checked: ``{"of": <evaluation id>}`` or
        ``{"of_card": True}``, with ``"reproduced"`` and ``"differences"``. Each is sent only when
        given; the registry refuses a malformed one (`RegistryError`, code ``InvalidEvaluation``)."""
        r = _as_ref(ref)
        version = r.version or self.resolve(r).version
        body = {"dataset": dataset, "dataset_sha256": dataset_sha256, "metrics": metrics}
        extra = {"protocol": protocol, "confusion_matrix": confusion_matrix, "verification": verification}
        body.update({k: v for k, v in extra.items() if v is not None})
        return self._request("POST", f"{self._adapter_path(r)}/versions/{version}/evaluations", ref=r, json=body).json()

    def yank(self, ref: str | Reference, reason: str) -> dict:
        """Mark an exact version (``ns/name@1.2.0``) as yanked: still pullable by version, never resolved."""
        r = _as_ref(ref)
        if not r.version:
            raise InvalidReferenceError(f"yank needs an exact version such as {r.repo_id}@1.2.0, got {r}")
        path = f"{self._adapter_path(r)}/versions/{r.version}/yank"
        response = self._request("POST", path, ref=r, json={"reason": reason})
        return response.json() if response.content else {}

    # -- internals ---------------------------------------------------------------------------
    @staticmethod
    def _adapter_path(r: Reference) -> str:
        return f"adapters/{r.namespace}/{r.name}"

    @contextlib.contextmanager
    def _transport(self) -> Iterator[None]:
        """Turn a network failure into one line naming the URL that failed."""
        if self.offline:
            raise OfflineError(f"ADAPTERHUB_OFFLINE=1: cannot reach the registry at {self.url}; only pull "
                               "and resolve of cached references work offline")
        try:
            yield
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise RegistryError(
                f"cannot reach the registry at {self.url} ({exc or type(exc).__name__}); start one with "
                "`adapterhub up` or set ADAPTERHUB_URL", code="ConnectionError",
            ) from None
        except httpx.TransportError as exc:
            raise RegistryError(
                f"the connection to the registry at {self.url} failed ({exc or type(exc).__name__}); "
                "run the command again (downloads resume where they stopped)", code="ConnectionError",
            ) from None

    def _request(self, method: str, path: str, *, ref: Reference | None = None, **kwargs) -> httpx.Response:
        with self._transport():
            try:
                response = self._http.request(method, path, **kwargs)
            except httpx.RemoteProtocolError:
                if method not in IDEMPOTENT:
                    raise
                response = self._http.request(method, path, **kwargs)  # a reused connection closed under us
        self._check(response, ref)
        return response

    def _check(self, response: httpx.Response, ref: Reference | None = None) -> None:
        """Raise the typed error for an error answer, with the server's message."""
        if response.status_code < 400:
            return
        response.read()
        try:
            body = response.json()
        except ValueError:
            body = {}
        detail = body.get("detail") if isinstance(body, dict) else None
        if isinstance(detail, list):  # a validation error: name the first field
            detail = "; ".join(f"{'.'.join(map(str, d.get('loc', [])))}: {d.get('msg')}" for d in detail[:3])
        detail = detail or f"{response.status_code} {response.reason_phrase} from {response.request.url}"
        code = body.get("code") if isinstance(body, dict) else None
        status = response.status_code
        if status == 404:
            err = AdapterNotFoundError(self._with_suggestions(detail, code, ref))
            err.status, err.code, err.reference = status, code, str(ref) if ref else None
            raise err
        if status in (401, 403):
            how = ("run `adapterhub login` or set ADAPTERHUB_TOKEN" if not self.token
                   else "check the token with `adapterhub whoami`, or `adapterhub login` again")
            raise AuthenticationError(f"{detail} ({how})", status, code)
        raise RegistryError(detail, status, code)

    def _with_suggestions(self, detail: str, code: str | None, ref: Reference | None) -> str:
        if ref is None or code not in (None, "RepoNotFound"):
            return detail
        names: set[str] = set()
        for params in ({"q": ref.name, "limit": 100}, {"namespace": ref.namespace, "limit": 100}, {"limit": 100}):
            try:
                with self._transport():
                    response = self._http.get("adapters", params=params)
                if response.status_code == 200:
                    names |= {f"{a['namespace']}/{a['name']}" for a in response.json().get("items", [])}
            except (AdapterHubError, ValueError, KeyError, TypeError):
                continue
        close = difflib.get_close_matches(ref.repo_id, sorted(names - {ref.repo_id}), n=3, cutoff=0.6)
        return f"{detail} (did you mean {', '.join(close)}?)" if close else detail
