"""The gateway app's two ways in: POST /v1/embeddings straight to its endpoint, the rest through
Starlette's router, also when the app is mounted under a prefix (no Redis: nothing here is
enqueued)."""

from __future__ import annotations

import asyncio

import httpx
from starlette.applications import Starlette
from starlette.routing import Mount

from embedq.config.settings import Settings
from embedq.gateway.app import create_app


def _ask(app: object, method: str, path: str, body: bytes = b"") -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
            return await client.request(method, path, content=body)

    return asyncio.run(go())


def test_embeddings_are_answered_directly_and_under_a_prefix_through_the_router():
    app = create_app(Settings(redis_url="redis://127.0.0.1:1/0"))
    mounted = Starlette(routes=[Mount("/embedq", app=app)])
    for served, prefix in ((app, ""), (mounted, "/embedq")):
        bad = _ask(served, "POST", f"{prefix}/v1/embeddings", b'{"input": true, "model": "search"}')
        assert bad.status_code == 400
        assert bad.json()["error"]["param"] == "input"
        assert len(bad.headers["x-request-id"]) == 16
        models = _ask(served, "GET", f"{prefix}/v1/models")
        assert models.status_code == 200
        assert "search" in {card["id"] for card in models.json()["data"]}
        wrong = _ask(served, "GET", f"{prefix}/v1/embeddings")
        assert wrong.status_code == 405
        assert wrong.json()["error"]["code"] == "method_not_allowed"
