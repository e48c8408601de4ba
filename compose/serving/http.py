"""The HTTP face of `AdapterServer`: an OpenAI-compatible API where ``model`` is an adapter reference.

``POST /v1/completions`` and ``POST /v1/chat/completions`` (greedy, ``max_tokens``), ``POST
/v1/classify`` (labels and probabilities), ``GET /v1/models`` (the adapters in memory), ``GET
/metrics`` (Prometheus text) and ``GET /health``. The sticky rollout key is the ``user`` field or the
``X-Adapterhub-Key`` header. Errors are OpenAI-shaped ``{"error": {"message", "type", "code"}}``:
404 for an unknown adapter, 422 for an adapter built for another base, 413 for an oversized prompt.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Header, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, Field

from adapterhub.compose.serving.requests import PromptTooLongError, ReplicaUnavailableError, WrongTaskError
from adapterhub.compose.serving.server import AdapterServer
from adapterhub.errors import (
    AdapterHubError,
    AdapterNotFoundError,
    CompositionError,
    IncompatibleAdapterError,
    InvalidAdapterError,
    InvalidReferenceError,
)

STATUS: list[tuple[type[BaseException], int, str]] = [
    (AdapterNotFoundError, 404, "model_not_found"),
    (IncompatibleAdapterError, 422, "incompatible_adapter"),
    (PromptTooLongError, 413, "prompt_too_long"),
    (ReplicaUnavailableError, 503, "replica_unavailable"),
    (WrongTaskError, 400, "wrong_task"),
    (InvalidReferenceError, 400, "invalid_model"),
    (InvalidAdapterError, 400, "invalid_request"),
    (CompositionError, 400, "invalid_request"),
    (AdapterHubError, 502, "adapterhub_error"),
]


class CompletionRequest(BaseModel):
    model: str
    prompt: str | list[str]
    max_tokens: int = Field(16, ge=0)
    user: str | None = None
    temperature: float | None = None  # accepted for compatibility; decoding is greedy


class ChatMessage(BaseModel):
    role: str
    content: str


class ChatRequest(BaseModel):
    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int = Field(16, ge=0)
    user: str | None = None
    temperature: float | None = None


class ClassifyRequest(BaseModel):
    model: str
    input: str | list[str]
    user: str | None = None


def _error(exc: BaseException) -> JSONResponse:
    for kind, status, code in STATUS:
        if isinstance(exc, kind):
            return JSONResponse({"error": {"message": str(exc), "type": "invalid_request_error"
                                           if status < 500 else "server_error", "code": code}}, status_code=status)
    return JSONResponse({"error": {"message": f"{type(exc).__name__}: {exc}", "type": "server_error",
                                   "code": "internal_error"}}, status_code=500)


def _chat_prompt(tokenizer, messages: list[ChatMessage]) -> str:
    msgs = [m.model_dump() for m in messages]
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    return "\n".join(f"{m['role']}: {m['content']}" for m in msgs) + "\nassistant:"


def _meta(results) -> dict[str, Any]:
    r = results[0].resolved
    return {"version": r.version, "arm": r.arm, "rollout_id": r.rollout_id, "resolved": r.exact}


def _headers(results) -> dict[str, str]:
    r = results[0].resolved
    return {"X-Adapterhub-Version": r.exact, "X-Adapterhub-Arm": r.arm}


def get_server(request: Request) -> AdapterServer:  # or the Ray router's stand-in (`ray_backend.Fleet`)
    """The engine the app was built over; routes take it as a dependency, like the registry's state."""
    return request.app.state.server


ServerDep = Annotated[AdapterServer, Depends(get_server)]
KeyHeader = Annotated[str | None, Header()]  # the sticky rollout key when the body has no ``user``

# routers per resource, as the registry's; no tags, so the OpenAPI document stays what it was
inference = APIRouter(prefix="/v1")  # completions, chat completions, classification
models_router = APIRouter(prefix="/v1")  # the adapters in memory, as OpenAI "models"
ops = APIRouter()  # what an operator or a load balancer asks


async def _run_all(server: AdapterServer, ref: str, prompts: list[str], key: str | None, **kw: Any) -> list:
    """Submit every prompt (validation may raise) and await them without blocking the loop."""
    loop = asyncio.get_running_loop()
    futures = [await loop.run_in_executor(None, lambda p=p: server.submit(ref, p, key=key, **kw)) for p in prompts]
    return [await asyncio.wrap_future(f) for f in futures]


@inference.post("/completions")
async def completions(body: CompletionRequest, server: ServerDep, x_adapterhub_key: KeyHeader = None) -> JSONResponse:
    prompts = [body.prompt] if isinstance(body.prompt, str) else list(body.prompt)
    try:
        results = await _run_all(server, body.model, prompts, body.user or x_adapterhub_key, max_tokens=body.max_tokens)
    except Exception as exc:
        return _error(exc)
    prompt_tokens = sum(r.prompt_tokens for r in results)
    completion_tokens = sum(len(r.token_ids) for r in results)
    return JSONResponse({
        "id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion", "created": int(time.time()),
        "model": body.model,
        "choices": [{"text": r.text, "index": i, "logprobs": None, "finish_reason": r.finish_reason}
                    for i, r in enumerate(results)],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
        "adapterhub": _meta(results),
    }, headers=_headers(results))


@inference.post("/chat/completions")
async def chat(body: ChatRequest, server: ServerDep, x_adapterhub_key: KeyHeader = None) -> JSONResponse:
    try:
        prompt = _chat_prompt(server.tokenizer, body.messages)
        results = await _run_all(server, body.model, [prompt], body.user or x_adapterhub_key, max_tokens=body.max_tokens)
    except Exception as exc:
        return _error(exc)
    r = results[0]
    return JSONResponse({
        "id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
        "model": body.model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": r.text},
                     "finish_reason": r.finish_reason}],
        "usage": {"prompt_tokens": r.prompt_tokens, "completion_tokens": len(r.token_ids),
                  "total_tokens": r.prompt_tokens + len(r.token_ids)},
        "adapterhub": _meta(results),
    }, headers=_headers(results))


@inference.post("/classify")
async def classify(body: ClassifyRequest, server: ServerDep, x_adapterhub_key: KeyHeader = None) -> JSONResponse:
    texts = [body.input] if isinstance(body.input, str) else list(body.input)
    try:
        results = await _run_all(server, body.model, texts, body.user or x_adapterhub_key, kind="classify")
    except Exception as exc:
        return _error(exc)
    return JSONResponse({
        "object": "list", "model": body.model,
        "data": [{"index": i, "label": r.label, "probabilities": r.probabilities} for i, r in enumerate(results)],
        "adapterhub": _meta(results),
    }, headers=_headers(results))


@models_router.get("/models", response_model=None)
def models(server: ServerDep) -> dict[str, Any]:
    return {"object": "list", "data": [
        {"id": e["id"], "object": "model", "owned_by": e["id"].split("/")[0], "bytes": e["bytes"],
         "pinned": e["pinned"]} for e in server.loaded()]}


@ops.get("/metrics")
def metrics(server: ServerDep) -> PlainTextResponse:
    return PlainTextResponse(server.metrics_text(), media_type="text/plain; version=0.0.4")


@ops.get("/health", response_model=None)
def health(server: ServerDep) -> dict[str, Any]:
    return {"status": "ok", "base": server.base_name, "task": server.task, "adapters": len(server.loaded())}


# The last resort. Starlette answers an Exception handler from its outermost middleware and then
# re-raises, so the routes answer their own errors with `_error`; this only catches what escapes them.
async def _any_error(_request: Request, exc: Exception) -> JSONResponse:
    return _error(exc)


def install(app: FastAPI, server: Any) -> FastAPI:
    """Put the routes on ``app`` over ``server``: an `AdapterServer`, or the Ray router's `Fleet`
    (one HTTP surface for both backends)."""
    app.state.server = server
    app.add_exception_handler(Exception, _any_error)
    for router in (inference, models_router, ops):
        app.include_router(router)
    return app


def create_app(server: AdapterServer) -> FastAPI:
    """The FastAPI app over ``server`` (which the caller owns and closes)."""
    return install(FastAPI(title="adapterhub serve-model", version="1"), server)


__all__ = ["create_app", "install"]
