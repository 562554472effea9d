"""How a web app uses embedq: one client per process, one call per request.

    EMBEDQ_REDIS_URL=redis://127.0.0.1:6379/0 python examples/web_app.py "red running shoes"

The client reads EMBEDQ_* settings; it never imports torch, so the web process stays small.
"""

import sys

import numpy as np

from embedq.producer import EmbeddingClient, EmbedqError


def main(query: str) -> int:
    """Embed a search query and print the first values of its unit vector."""
    client = EmbeddingClient()
    try:
        vector = client.embed([query], use_case="search", timeout=30)[0]
    except EmbedqError as exc:  # one error tree: bad input, unknown use case, timeout, ...
        print(f"could not embed {query!r}: {exc}", file=sys.stderr)
        return 1
    print(f"{vector.shape[0]}-d, norm {np.linalg.norm(vector):.3f}: {np.round(vector[:4], 4)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(" ".join(sys.argv[1:]) or "red running shoes"))
