"""Database tables. Rows never leave in a response: `schemas.py` holds what the API returns.

Versions, files, blobs, evaluations and the audit log are append-only; a version is never
rewritten (only ``yanked``/``yank_reason`` change). ``AliasHistory`` keeps every alias move with
its validity interval, so "which version was ``stable`` at time T" is one query.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import JSON, BigInteger, Column, DateTime, Index, UniqueConstraint
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


class User(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=96, unique=True, index=True)
    is_admin: bool = False
    created_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))


class Token(SQLModel, table=True):
    """An API token: ``ah_<public_id>_<secret>``; only a salted hash of the secret is stored."""

    id: int | None = Field(default=None, primary_key=True)
    public_id: str = Field(max_length=32, unique=True, index=True)
    user_id: int = Field(foreign_key="user.id", index=True)
    name: str = Field(default="", max_length=200)
    scope: str = Field(max_length=16)
    namespaces: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    salt: str = Field(max_length=64)
    secret_hash: str = Field(max_length=128)
    created_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))
    expires_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    revoked_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    # the token that minted this one (a user's own tokens only): revoking a token revokes its children
    parent_id: int | None = Field(default=None, foreign_key="token.id", index=True)


class Namespace(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=96, unique=True, index=True)
    private: bool = False
    owner_id: int | None = Field(default=None, foreign_key="user.id")
    created_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))


class Adapter(SQLModel, table=True):
    """An adapter; ``latest_*`` and ``downloads`` are denormalised for fast search.

    The ``(filter, created_at, id)`` indexes serve "filter = x, newest first" pages from the index
    alone: the database reads the first page's rows instead of sorting every match.
    """

    __table_args__ = (
        UniqueConstraint("namespace_id", "name"),
        Index("ix_adapter_namespace_id_newest", "namespace_id", "created_at", "id"),
        Index("ix_adapter_task_newest", "task", "created_at", "id"),
        Index("ix_adapter_method_newest", "method", "created_at", "id"),
        Index("ix_adapter_base_model_newest", "base_model", "created_at", "id"),
    )
    id: int | None = Field(default=None, primary_key=True)
    namespace_id: int = Field(foreign_key="namespace.id", index=True)
    name: str = Field(max_length=96, index=True)
    description: str = ""
    task: str = Field(default="", max_length=200, index=True)
    method: str = Field(default="", max_length=64, index=True)
    base_model: str = Field(default="", max_length=300, index=True)
    tags: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    tags_text: str = ""  # ",tag1,tag2," for a LIKE filter that works on every database
    license: str = Field(default="", max_length=100)
    created_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True), index=True)
    latest_version: str | None = Field(default=None, max_length=300)
    latest_size: int = Field(default=0, sa_type=BigInteger)
    downloads: int = Field(default=0, sa_type=BigInteger, index=True)


class Version(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("adapter_id", "version"),)
    id: int | None = Field(default=None, primary_key=True)
    adapter_id: int = Field(foreign_key="adapter.id", index=True)
    version: str = Field(max_length=300)
    commit: str = Field(max_length=40, index=True)
    created_by: str = Field(max_length=96)
    created_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))
    yanked: bool = False
    yank_reason: str | None = None
    size: int = Field(default=0, sa_type=BigInteger)
    card: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    config: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    # which engines can serve it (`adapterhub.base_compat.serving_engines`), and what publishing it
    # noticed without refusing (an unregistered base, whose shapes nobody checked)
    engines: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False, server_default="[]"))
    warnings: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False, server_default="[]"))


class RegisteredBase(SQLModel, table=True):
    """A base model adapters are trained on, keyed by its Hugging Face Hub id.

    ``manifest`` is `adapterhub.base_manifest`'s: sizes and every module path with its weight
    shapes, read from the safetensors headers; publishing checks adapters against it. With
    ``mirror`` the base's own files (`BaseFile`) are served over the HF routes under ``hub_id``.
    """

    __tablename__ = "base_model"
    id: int | None = Field(default=None, primary_key=True)
    hub_id: str = Field(max_length=300, unique=True, index=True)
    aliases: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    revision: str = Field(default="", max_length=64)  # content sha256 of its weights and config
    architecture: str = Field(default="", max_length=200)
    manifest: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    mirror: bool = False
    created_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))
    updated_by: str = Field(default="", max_length=96)


class BaseAlias(SQLModel, table=True):
    """One short name of a base (``minilm-l6``): unique across bases, so a name means one model."""

    __tablename__ = "base_alias"
    name: str = Field(primary_key=True, max_length=300)
    base_id: int = Field(foreign_key="base_model.id", index=True)


class BaseFile(SQLModel, table=True):
    """A file of a mirrored base, stored as a blob like any adapter file."""

    __tablename__ = "base_file"
    __table_args__ = (UniqueConstraint("base_id", "path"),)
    id: int | None = Field(default=None, primary_key=True)
    base_id: int = Field(foreign_key="base_model.id", index=True)
    path: str = Field(max_length=1024)
    sha256: str = Field(foreign_key="blob.sha256", max_length=64)
    size: int = Field(sa_type=BigInteger)


class Blob(SQLModel, table=True):
    sha256: str = Field(primary_key=True, max_length=64)
    size: int = Field(sa_type=BigInteger)
    created_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))


class BlobUpload(SQLModel, table=True):
    """Who has proven they hold a blob's bytes, by uploading them (again, if already stored).

    Blobs are stored once, but knowing a sha256 is no proof of having the file: a version may
    list a blob only if its publisher uploaded it or may already read a version that lists it,
    as OCI registries require before a cross-repository mount.
    """

    __tablename__ = "blob_upload"
    sha256: str = Field(foreign_key="blob.sha256", primary_key=True, max_length=64)
    user_id: int = Field(foreign_key="user.id", primary_key=True, index=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))


class File(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("version_id", "path"),)
    id: int | None = Field(default=None, primary_key=True)
    version_id: int = Field(foreign_key="version.id", index=True)
    path: str = Field(max_length=1024)
    sha256: str = Field(foreign_key="blob.sha256", max_length=64, index=True)
    size: int = Field(sa_type=BigInteger)


class Alias(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("adapter_id", "name"),)
    id: int | None = Field(default=None, primary_key=True)
    adapter_id: int = Field(foreign_key="adapter.id", index=True)
    name: str = Field(max_length=64)
    version_id: int = Field(foreign_key="version.id")
    updated_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))
    updated_by: str = Field(default="", max_length=96)
    # made by the Hugging Face tag route (``create_tag``): a tag names one version for ever
    is_tag: bool = False


class AliasHistory(SQLModel, table=True):
    """One row per period an alias pointed somewhere: [valid_from, valid_to); open-ended if current."""

    id: int | None = Field(default=None, primary_key=True)
    adapter_id: int = Field(foreign_key="adapter.id", index=True)
    alias: str = Field(max_length=64, index=True)
    version: str = Field(max_length=300)
    valid_from: datetime = Field(sa_type=DateTime(timezone=True))
    valid_to: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    actor: str = Field(max_length=96)


class Evaluation(SQLModel, table=True):
    """A result posted for a version, with how it was run (`adapterhub.eval_protocol`) when given.

    ``protocol`` is the protocol as posted (`EvalProtocol.to_dict` form, unknown keys kept);
    ``confusion_matrix`` rows are the true labels, columns the predicted, in ``protocol.labels``
    order; ``verification`` says what a re-run checked: ``{"of": id | None, "of_card": bool,
    "reproduced": bool, "differences": [str]}``. Each is SQL NULL when absent (rows before 0007).
    """

    id: int | None = Field(default=None, primary_key=True)
    version_id: int = Field(foreign_key="version.id", index=True)
    dataset: str = Field(max_length=300)
    dataset_sha256: str = Field(default="", max_length=64)
    metrics: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_by: str = Field(max_length=96)
    created_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))
    # none_as_null: an absent value is SQL NULL, as in the rows the migration kept, not JSON 'null'
    protocol: dict | None = Field(default=None, sa_column=Column(JSON(none_as_null=True), nullable=True))
    confusion_matrix: list[list[int]] | None = Field(default=None,
                                                     sa_column=Column(JSON(none_as_null=True), nullable=True))
    verification: dict | None = Field(default=None, sa_column=Column(JSON(none_as_null=True), nullable=True))


class DownloadCount(SQLModel, table=True):
    version_id: int = Field(foreign_key="version.id", primary_key=True)
    count: int = Field(default=0, sa_type=BigInteger)


class AuditLog(SQLModel, table=True):
    """Append-only record of every write; ``adapter_id`` is null for user/token/namespace events."""

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True), index=True)
    actor: str = Field(max_length=96)
    action: str = Field(max_length=64)
    namespace: str = Field(default="", max_length=96)
    adapter_id: int | None = Field(default=None, index=True)
    details: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class Rollout(SQLModel, table=True):
    """An alias moving from ``stable_version_id`` to ``canary_version_id`` by weight (0-100 % canary).

    ``state``: active | paused (split held, no automatic step-up) | promoted | rolled_back.
    ``step_started_at`` and ``step_base_requests`` (canary requests when the step began) say how
    long and on how much traffic the current weight has run, for the schedule's step-up rule.
    """

    __tablename__ = "rollouts"
    id: int | None = Field(default=None, primary_key=True)
    adapter_id: int = Field(foreign_key="adapter.id", index=True)
    alias: str = Field(max_length=64, index=True)
    stable_version_id: int = Field(foreign_key="version.id")
    canary_version_id: int = Field(foreign_key="version.id")
    weight: float = 0.0
    state: str = Field(default="active", max_length=16, index=True)
    schedule: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    thresholds: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    reason: str = ""
    step_started_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))
    step_base_requests: int = Field(default=0, sa_type=BigInteger)
    created_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))
    created_by: str = Field(max_length=96)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))
    updated_by: str = Field(default="", max_length=96)


class RolloutOutcome(SQLModel, table=True):
    """Aggregated counters of one arm of a rollout; only ever incremented (``col = col + n``)."""

    __tablename__ = "rollout_outcomes"
    rollout_id: int = Field(foreign_key="rollouts.id", primary_key=True)
    arm: str = Field(max_length=8, primary_key=True)
    requests: int = Field(default=0, sa_type=BigInteger)
    errors: int = Field(default=0, sa_type=BigInteger)
    latency_sum: float = 0.0
    latency_sq_sum: float = 0.0
    quality_sum: float = 0.0
    quality_n: int = Field(default=0, sa_type=BigInteger)
