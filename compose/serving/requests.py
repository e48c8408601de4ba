"""What a serving request is and returns, and the checks that refuse one before it is queued.

Refusing early (wrong task, empty or oversized prompt) answers the caller at once with a clear
error instead of failing a row inside a batch, and keeps a bad request from costing a resolve or a
pull. Kept apart from the machinery so the HTTP face can name the errors without the batcher.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

from adapterhub.compose.serving.adapters import Entry
from adapterhub.compose.serving.resolver import Resolved
from adapterhub.errors import AdapterHubError, InvalidAdapterError
from adapterhub.vocab import CLASSIFICATION, LM


class PromptTooLongError(AdapterHubError):
    """A prompt longer than the server accepts (HTTP 413)."""


class ReplicaUnavailableError(AdapterHubError):
    """The replica holding a request died or is restarting (HTTP 503: the client retries)."""


class WrongTaskError(AdapterHubError, ValueError):
    """A completion asked of a classifier base, or a classification of a language-model base (HTTP 400)."""


@dataclass
class Completion:
    text: str
    token_ids: list[int]
    prompt_tokens: int
    finish_reason: str
    resolved: Resolved


@dataclass
class Classification:
    label: str
    probabilities: dict[str, float]
    resolved: Resolved


@dataclass
class Request:
    """One queued row: the adapter it runs with (held in memory until it is answered) and its Future."""

    kind: str  # "generate" | "classify"
    resolved: Resolved
    entry: Entry
    ids: list[int]
    max_tokens: int
    future: Future = field(default_factory=Future)
    started: float = field(default_factory=time.perf_counter)


@dataclass(frozen=True)
class RequestLimits:
    """What one base model can run: its task and how many tokens a prompt and an answer may have.

    ``positions`` is the base's context length (None when its config does not say): a prompt must
    leave room in it for the tokens asked for.
    """

    task: str  # CLASSIFICATION.name | LM.name
    base_name: str
    max_prompt_tokens: int
    max_new_tokens: int
    positions: int | None

    def check(self, kind: str, prompt: str | list[int], max_tokens: int,
              encode: Callable[[str], list[int]]) -> tuple[list[int], int]:
        """The prompt's token ids and the tokens to generate, or the error that refuses the request.

        The task is checked before the prompt is tokenised, so a request for the wrong kind of base
        is refused as such whatever its prompt.
        """
        if kind == "generate" and self.task != LM.name:
            raise WrongTaskError(f"base {self.base_name!r} is a classifier; completions need a causal language model")
        if kind == "classify" and self.task != CLASSIFICATION.name:
            raise WrongTaskError(f"base {self.base_name!r} is a causal language model; /v1/classify needs a classifier base")
        ids = list(prompt) if isinstance(prompt, list) else encode(prompt)
        if not ids:
            raise InvalidAdapterError("empty prompt: nothing to run")
        max_tokens = int(max_tokens) if kind == "generate" else 0
        if max_tokens < 0 or max_tokens > self.max_new_tokens:
            raise PromptTooLongError(f"max_tokens {max_tokens} is outside 0..{self.max_new_tokens}")
        limit = self.max_prompt_tokens
        if self.positions:
            limit = min(limit, self.positions - max_tokens)
        if len(ids) > limit:
            raise PromptTooLongError(f"prompt has {len(ids)} tokens; this server accepts at most {limit}"
                                     + (f" with max_tokens={max_tokens}" if kind == "generate" else ""))
        return ids, max_tokens


__all__ = ["Classification", "Completion", "PromptTooLongError", "Request", "RequestLimits", "WrongTaskError"]
