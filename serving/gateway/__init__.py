"""The OpenAI-compatible gateway: a lean ASGI app for paths under /v1/, mounted ahead of
Django in portal/asgi.py. See app.py for what it answers and how."""

from serving.gateway.app import GatewayApp

__all__ = ["GatewayApp"]
