"""The OpenAI-compatible HTTP gateway: embedq for any language that speaks HTTP.

Needs the ``gateway`` extra (Starlette, uvicorn). Imports only config, tasks and producer, so a
gateway host never loads torch.
"""

from embedq.gateway.app import create_app

__all__ = ["create_app"]
