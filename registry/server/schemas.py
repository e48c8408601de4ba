"""API models, apart from the tables: what comes in and what goes out (never a secret hash)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from adapterhub.format import MAX_FILES_PER_VERSION, WEIGHTS_FILE
from adapterhub.registry.server.auth import to_utc

Scope = Literal["read", "write", "admin"]
# Text inputs carry ``max_length`` = the width of their column (models.py): PostgreSQL refuses a
# longer value, SQLite would keep it, so both now answer 422 alike.
# Inputs with floats refuse NaN and ±Infinity (Python's JSON parser accepts them): stored, they made
# every later read of the row fail to serialise or overflow.
FINITE = ConfigDict(allow_inf_nan=False)
# Per-batch bounds on rollout outcome counters: far above any real traffic, far below what the
# BIGINT counters (summed over many reports) and the variance arithmetic (squares) can hold.
MAX_COUNT = 10**9
MAX_SUM = 1e15
# a confusion matrix row (at most 1000 labels) of exact counts: JSON's 2^53 keeps them exact in every client
MatrixRow = Annotated[list[Annotated[int, Field(strict=True, ge=0, le=2**53 - 1)]], Field(max_length=1000)]


class ErrorOut(BaseModel):
    """Every error body (see `errors.error_response`): one line for people, a code for programs."""

    detail: str = Field(examples=["adapter acme/x not found (or you may not read it)"])
    code: str = Field(examples=["RepoNotFound"])


class UserCreate(BaseModel):
    name: str = Field(examples=["alice"])


class UserPublic(BaseModel):
    name: str


class UserEntry(BaseModel):
    """One row of ``GET /users`` (admin only)."""

    name: str
    is_admin: bool
    created_at: datetime


class TokenCreate(BaseModel):
    user: str = Field(examples=["alice"])
    scope: Scope = "read"
    namespaces: list[str] = Field(default_factory=lambda: ["*"], examples=[["alice"]])
    expires_at: datetime | None = None
    name: str = Field(default="", max_length=200, examples=["laptop"])

    @field_validator("namespaces")
    @classmethod
    def _distinct(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(value))

    @field_validator("expires_at")
    @classmethod
    def _in_utc(cls, value: datetime | None) -> datetime | None:
        """Stored in UTC (`auth.to_utc`); an offset that carries it past year 1 or 9999 is refused here."""
        try:
            return to_utc(value)
        except OverflowError:
            raise ValueError("out of range once converted to UTC (years 1-9999)") from None


class TokenCreated(BaseModel):
    id: int
    token: str = Field(description="the secret, shown once", examples=["ah_0123abcd_…"])
    expires_at: datetime | None = Field(default=None, description="in UTC; never after the minting token's")


class TokenPublic(BaseModel):
    """A token as ``GET /tokens`` lists it: what it may do and how long, never its secret nor its hash."""

    id: int
    user: str
    name: str
    scope: Scope
    namespaces: list[str]
    created_at: datetime
    expires_at: datetime | None = Field(description="in UTC; null: no expiry")
    revoked_at: datetime | None
    current: bool = Field(description="the token making this request")


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
    task: str = Field(default="", max_length=200)
    method: str = Field(default="", max_length=64)
    base_model: str = Field(default="", max_length=300)
    tags: list[str] = Field(default_factory=list)
    license: str = Field(default="", max_length=100)


class AdapterUpdate(BaseModel):
    description: str | None = None
    task: str | None = Field(default=None, max_length=200)
    method: str | None = Field(default=None, max_length=64)
    base_model: str | None = Field(default=None, max_length=300)
    tags: list[str] | None = None
    license: str | None = Field(default=None, max_length=100)


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
    # one push asks about one version's files at most
    sha256: list[str] = Field(max_length=MAX_FILES_PER_VERSION)


class BlobsMissingOut(BaseModel):
    missing: list[str]


class BlobOut(BaseModel):
    sha256: str
    size: int


class FileEntry(BaseModel):
    path: str = Field(examples=[WEIGHTS_FILE])
    sha256: str
    size: int = Field(ge=0)


class VersionCreate(BaseModel):
    version: str = Field(max_length=300, examples=["1.0.0"])
    files: list[FileEntry]
    alias: str | None = Field(default=None, examples=["stable"])


class VerificationIn(BaseModel):
    of: int | None = Field(default=None, ge=1, le=2**31 - 1, description="the id of the evaluation re-run")
    of_card: bool = Field(default=False, description="the card's own figures were re-run (instead of `of`)")
    reproduced: bool
    differences: list[Annotated[str, Field(max_length=2000)]] = Field(default_factory=list, max_length=50)


class EvaluationCreate(BaseModel):
    model_config = FINITE

    dataset: str = Field(max_length=300, examples=["sst2"])
    dataset_sha256: str = Field(default="", max_length=64)
    metrics: dict[str, float] = Field(examples=[{"accuracy": 0.91}])
    protocol: dict | None = Field(default=None, description="adapterhub.eval_protocol's EvalProtocol.to_dict()")
    confusion_matrix: list[MatrixRow] | None = Field(default=None, max_length=1000)  # rows true, columns predicted
    verification: VerificationIn | None = None


class EvaluationOut(BaseModel):
    id: int
    version: str
    dataset: str
    dataset_sha256: str
    metrics: dict
    created_by: str
    created_at: datetime
    protocol: dict | None = None
    confusion_matrix: list[list[int]] | None = None
    verification: dict | None = None


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
    engines: list[str] = []  # which engines can serve it (adapterhub.base_compat.serving_engines)
    warnings: list[str] = []  # what publishing noticed without refusing (say, an unregistered base)


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


Arm = Literal["stable", "canary"]
RolloutState = Literal["active", "paused", "promoted", "rolled_back"]


class RolloutSchedule(BaseModel):
    """Automatic step-up: to the next of ``steps`` once a step has lasted ``min_duration_s`` and the
    canary served ``min_requests`` in it; the step that reaches 100 promotes."""

    model_config = FINITE

    steps: list[float] = Field(examples=[[5, 25, 50, 100]])
    min_duration_s: float = Field(default=600.0, ge=0)
    min_requests: int = Field(default=100, ge=0)

    @field_validator("steps")
    @classmethod
    def _increasing(cls, steps: list[float]) -> list[float]:
        if not steps or any(not 0 < s <= 100 for s in steps) or any(b <= a for a, b in zip(steps, steps[1:], strict=False)):
            raise ValueError(f"steps must be strictly increasing weights in (0, 100], got {steps}")
        return steps


class RolloutThresholds(BaseModel):
    """When to roll back: errors (one-sided two-proportion z-test), latency and quality regressions,
    each only once both arms have ``min_requests`` (quality: scored requests)."""

    model_config = FINITE

    p_value: float = Field(default=0.01, gt=0, lt=0.5)
    min_requests: int = Field(default=100, ge=1)
    latency_tolerance: float = Field(default=0.2, ge=0)
    quality_tolerance: float = Field(default=0.05, ge=0)


class RolloutCreate(BaseModel):
    model_config = FINITE

    alias: str = Field(examples=["prod"])
    canary_version: str = Field(examples=["1.1.0"])
    weight: float = Field(ge=0, le=100, examples=[10])
    schedule: RolloutSchedule | None = None
    thresholds: RolloutThresholds = Field(default_factory=RolloutThresholds)


class RolloutStep(BaseModel):
    model_config = FINITE

    weight: float = Field(ge=0, le=100, examples=[50])


class RolloutNote(BaseModel):
    reason: str = Field(default="", max_length=500)


class OutcomeBatch(BaseModel):
    """Counters of one arm over a batch of requests (latencies in seconds; quality higher is better)."""

    model_config = FINITE

    arm: Arm
    requests: int = Field(ge=0, le=MAX_COUNT)
    errors: int = Field(default=0, ge=0, le=MAX_COUNT)
    latency_sum: float = Field(default=0.0, ge=0, le=MAX_SUM)
    latency_sq_sum: float = Field(default=0.0, ge=0, le=MAX_SUM)
    quality_sum: float = Field(default=0.0, ge=-MAX_SUM, le=MAX_SUM)
    quality_n: int = Field(default=0, ge=0, le=MAX_COUNT)

    @model_validator(mode="after")
    def _consistent(self) -> OutcomeBatch:
        if self.errors > self.requests:
            raise ValueError(f"errors ({self.errors}) exceed requests ({self.requests})")
        if self.quality_n > self.requests:
            raise ValueError(f"quality_n ({self.quality_n}) exceeds requests ({self.requests})")
        return self


class OutcomeReport(BaseModel):
    rollout_id: int | None = Field(default=None, description="refuse the report if another rollout is current")
    batches: list[OutcomeBatch] = Field(min_length=1, max_length=100)


class ArmOut(BaseModel):
    version: str
    requests: int
    errors: int
    error_rate: float | None
    latency_mean: float | None
    latency_std: float | None
    quality_mean: float | None
    quality_n: int


class RolloutOut(BaseModel):
    id: int
    alias: str
    stable_version: str
    canary_version: str
    weight: float
    state: RolloutState
    next_step: float | None
    schedule: dict
    thresholds: dict
    reason: str
    error_p_value: float | None
    step_started_at: datetime
    created_at: datetime
    created_by: str
    updated_at: datetime
    updated_by: str
    arms: dict[str, ArmOut]


class BaseCreate(BaseModel):
    """A base model to register (admin): its Hub id, short names, manifest, and (to mirror it) files."""

    id: str = Field(max_length=300, examples=["HuggingFaceTB/SmolLM2-135M-Instruct"])
    aliases: list[str] = Field(default_factory=list, max_length=32, examples=[["smollm2-135m"]])
    manifest: dict = Field(description="adapterhub.base_manifest: sizes and every module's weight shapes")
    mirror: bool = False
    files: list[FileEntry] = Field(default_factory=list, max_length=MAX_FILES_PER_VERSION)


class BaseOut(BaseModel):
    id: str
    aliases: list[str]
    revision: str
    architecture: str
    mirror: bool
    modules: int
    files: list[FileEntry]
    manifest: dict | None = None  # only when one base is read
