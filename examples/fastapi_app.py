"""A FastAPI app that embeds search queries through embedq (FastAPI is yours, not embedq's).

    pip install fastapi uvicorn
    EMBEDQ_REDIS_URL=redis://127.0.0.1:6379/0 uvicorn examples.fastapi_app:app --workers 4
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, HTTPException

from embedq.producer import EmbeddingClient, EmbedqError, InvalidInputError, OverloadedError

client = EmbeddingClient()  # one per process, shared by every request (threads and coroutines)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with client:  # closes its connections and threads at shutdown
        yield


app = FastAPI(lifespan=lifespan)


@app.get("/embed")
async def embed(q: str) -> dict[str, object]:
    try:
        vector = (await client.aembed([q], use_case="search", timeout=5))[0]
    except InvalidInputError as exc:  # empty, too long, not text: the caller's mistake
        raise HTTPException(400, str(exc)) from exc
    except OverloadedError as exc:  # refused at once: could not be answered within 5 s
        retry = str(round(exc.retry_after_s))
        raise HTTPException(429, str(exc), headers={"Retry-After": retry}) from exc
    except EmbedqError as exc:  # no live worker, broker down, timeout: ours
        raise HTTPException(503, str(exc)) from exc
    return {"dim": len(vector), "vector": vector.tolist()}
