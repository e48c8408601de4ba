"""The FastAPI application factory and `serve`.

>>> app = create_app(Settings.from_env({"ADAPTERHUB_HOME": "/tmp/hub"}))
>>> serve(host="127.0.0.1", port=8000)  # what `adapterhub serve` runs
"""

from __future__ import annotations

import logging
import sys
from contextlib import asynccontextmanager

from fastapi import FastAPI
from sqlmodel import Session, select

from adapterhub.registry.server import db, security
from adapterhub.registry.server.auth import ADMIN_USER, FailureLimiter, new_token_secret
from adapterhub.registry.server.blobstore import open_blobstore
from adapterhub.registry.server.errors import install_handlers
from adapterhub.registry.server.models import Token, User
from adapterhub.registry.server.rollouts import RolloutCache
from adapterhub.registry.server.routes import (
    adapters,
    aliases,
    auth,
    bases,
    blobs,
    evaluations,
    hf,
    hf_repos,
    hf_upload,
    rollouts,
    versions,
)
from adapterhub.registry.server.settings import Settings

log = logging.getLogger("adapterhub.registry")


def bootstrap_admin(engine, settings: Settings) -> str | None:
    """Ensure the ``admin`` user; without ``ADAPTERHUB_ADMIN_TOKEN`` and without any admin token yet,
    create one and return it (the caller prints it once; only its hash is kept)."""
    with Session(db.writer(engine)) as session:
        admin = session.exec(select(User).where(User.name == ADMIN_USER)).first()
        if admin is None:
            admin = User(name=ADMIN_USER, is_admin=True)
            session.add(admin)
            session.flush()
        generated = None
        if not settings.admin_token:
            live = session.exec(select(Token).where(Token.user_id == admin.id, Token.revoked_at.is_(None))).first()
            if live is None:
                generated, public_id, salt, secret_hash = new_token_secret()
                session.add(Token(public_id=public_id, user_id=admin.id, name="bootstrap", scope="admin",
                                  namespaces=["*"], salt=salt, secret_hash=secret_hash))
        session.commit()
        return generated


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app: migrate the database, sweep stale temp uploads, bootstrap the admin."""
    settings = settings or Settings.from_env()
    settings.home.mkdir(parents=True, exist_ok=True)
    engine = db.make_engine(settings.database_url)
    db.upgrade(engine)
    store = open_blobstore(settings.blob_url, settings.home, settings.s3_endpoint_url, settings.s3_presign)
    swept = store.sweep_temp()
    generated = bootstrap_admin(engine, settings)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        yield
        engine.dispose()

    app = FastAPI(
        title="adapterhub registry",
        version="1",
        description="Versions, aliases, rollouts, blobs and evaluations of adapters; plus the Hugging Face Hub protocol.",
        openapi_url="/api/v1/openapi.json",
        docs_url="/api/v1/docs",
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.settings, app.state.engine, app.state.store = settings, engine, store
    app.state.write_engine = db.writer(engine)
    app.state.limiter = FailureLimiter(settings.auth_fail_limit, settings.auth_fail_window_s)
    app.state.rollout_cache = RolloutCache(settings.rollout_cache_ttl_s)
    app.state.generated_admin_token, app.state.swept_temp_files = generated, swept
    install_handlers(app)
    security.install(app, settings)

    @app.get("/api/v1/health", tags=["meta"])
    def health() -> dict:
        return {"status": "ok"}

    for module in (auth, adapters, bases, blobs, versions, aliases, evaluations, rollouts):
        app.include_router(module.router, prefix="/api/v1")
    app.include_router(hf_repos.router)  # before hf.router: /api/models/... must not read as /{ns}/{name}/...
    app.include_router(hf_upload.router)
    app.include_router(hf.api)
    app.include_router(hf.router)
    return app


def serve(host: str = "127.0.0.1", port: int = 8000, settings: Settings | None = None) -> None:
    """Run the registry with uvicorn; print a generated admin token once."""
    import uvicorn

    settings = settings or Settings.from_env()
    if not settings.trusted_hosts and host in security.WILDCARD_BINDS:
        print(f"listening on all interfaces, but answering only requests for {', '.join(security.DEFAULT_TRUSTED_HOSTS)}; "
              "set ADAPTERHUB_TRUSTED_HOSTS to the names clients use", file=sys.stderr, flush=True)
    settings.trusted_hosts = security.trusted_hosts(settings.trusted_hosts, host)
    app = create_app(settings)
    if app.state.generated_admin_token:
        print(f"adapterhub admin token (shown once, store it): {app.state.generated_admin_token}",
              file=sys.stderr, flush=True)
    if app.state.swept_temp_files:
        print(f"swept {app.state.swept_temp_files} unfinished upload(s)", file=sys.stderr, flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False, timeout_graceful_shutdown=5)
