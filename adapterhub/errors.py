"""Typed errors shared by the engine, the client and the faces.

They live in this leaf module (no torch, no server imports) so that `adapterhub.registry.client`
and `adapterhub.compose` can raise the same types without importing each other. Every error
carries the values a user needs to act: the reference, the expected and the found value.
"""

from __future__ import annotations


class AdapterHubError(Exception):
    """Base of every error adapterhub raises on purpose; the CLI maps these to one-line messages."""


class InvalidReferenceError(AdapterHubError, ValueError):
    """A reference such as ``ns/name@1.2.0`` that does not parse."""


class AdapterNotFoundError(AdapterHubError, LookupError):
    """An adapter, version, alias or file that does not exist (or that the caller may not read)."""


class IncompatibleAdapterError(AdapterHubError):
    """An adapter trained for another base model or with shapes that disagree with this one."""


class InvalidAdapterError(AdapterHubError, ValueError):
    """A malformed adapter folder: bad config, unknown method, missing field, bad safetensors."""


class TargetModuleNotFoundError(InvalidAdapterError):
    """A ``target_modules`` entry that matches no module of the model."""


class CompositionError(AdapterHubError, ValueError):
    """A composition that nests blocks illegally or names an adapter that is not loaded."""


class RegistryError(AdapterHubError):
    """The registry answered with an error; ``status`` and ``code`` say which."""

    def __init__(self, message: str, status: int | None = None, code: str | None = None):
        super().__init__(message)
        self.status = status
        self.code = code


class AuthenticationError(RegistryError):
    """No token, a bad token, or a token without the scope an operation needs."""


class OfflineError(AdapterHubError):
    """``ADAPTERHUB_OFFLINE=1`` and the local cache lacks what was asked for."""
