"""API models, apart from the tables: what comes in and what goes out (never a secret hash)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

Scope = Literal["read", "write", "admin"]


class UserCreate(BaseModel):
    name: str = Field(examples=["alice"])


class UserPublic(BaseModel):
    name: str


class TokenCreate(BaseModel):
    user: str = Field(examples=["alice"])
    scope: Scope = "read"
    namespaces: list[str] = Field(default_factory=lambda: ["*"], examples=[["alice"]])
    expires_at: datetime | None = None
    name: str = Field(default="", examples=["laptop"])


class TokenCreated(BaseModel):
    id: int
    token: str = Field(description="the secret, shown once", examples=["ah_0123abcd_…"])


class ScopeEntry(BaseModel):
    scope: Scope
    namespace: str


class WhoAmI(BaseModel):
    user: str
    is_admin: bool
    scopes: list[ScopeEntry]


class NamespaceCreate(BaseModel):
    name: str = Field(examples=["acme"])
    private: bool = False


class NamespacePublic(BaseModel):
    name: str
    private: bool
    owner: str | None
    created_at: datetime


class AdapterCreate(BaseModel):
    namespace: str = Field(examples=["acme"])
    name: str = Field(examples=["sentiment"])
    description: str = ""
    task: str = ""
    method: str = ""
    base_model: str = ""
    tags: list[str] = Field(default_factory=list)
    license: str = ""


class AdapterUpdate(BaseModel):
    description: str | None = None
    task: str | None = None
    method: str | None = None
    base_model: str | None = None
    tags: list[str] | None = None
    license: str | None = None


class AdapterSummary(BaseModel):
    namespace: str
    name: str
    description: str
    task: str
    method: str
    base_model: str
    tags: list[str]
    license: str
    private: bool
    created_at: datetime
    latest_version: str | None
    aliases: dict[str, str]
    downloads: int
    size: int
    metrics: dict


class AdapterPage(BaseModel):
    items: list[AdapterSummary]
    next_cursor: str | None


class BlobsMissingIn(BaseModel):
    sha256: list[str]


class BlobsMissingOut(BaseModel):
    missing: list[str]


class BlobOut(BaseModel):
    sha256: str
    size: int


class FileEntry(BaseModel):
    path: str = Field(examples=["adapter_model.safetensors"])
    sha256: str
    size: int = Field(ge=0)


class VersionCreate(BaseModel):
    version: str = Field(examples=["1.0.0"])
    files: list[FileEntry]
    alias: str | None = Field(default=None, examples=["stable"])


class EvaluationCreate(BaseModel):
    dataset: str = Field(examples=["sst2"])
    dataset_sha256: str = ""
    metrics: dict[str, float] = Field(examples=[{"accuracy": 0.91}])


class EvaluationOut(BaseModel):
    id: int
    version: str
    dataset: str
    dataset_sha256: str
    metrics: dict
    created_by: str
    created_at: datetime


class VersionOut(BaseModel):
    version: str
    commit: str
    created_at: datetime
    created_by: str
    yanked: bool
    yank_reason: str | None
    size: int
    files: list[FileEntry]
    card: dict
    config: dict
    evaluations: list[EvaluationOut]


class YankIn(BaseModel):
    reason: str = ""


class AliasSet(BaseModel):
    version: str


class AliasOut(BaseModel):
    alias: str
    version: str


class AliasHistoryEntry(BaseModel):
    version: str
    from_: datetime = Field(alias="from", serialization_alias="from")
    to: datetime | None
    actor: str

    model_config = {"populate_by_name": True}


class ResolveOut(BaseModel):
    namespace: str
    name: str
    version: str
    commit: str
    arm: Literal["stable", "canary"] = "stable"
    rollout_id: int | None = None


class AuditEntry(BaseModel):
    id: int
    at: datetime
    actor: str
    action: str
    details: dict
