"""Fixtures the gateway tests share: deployments served by fake engines, reachable through
the uvicorn-served gateway, and clients for it that are closed after the test."""

import pytest

from tests.serving.gateway_support import gateway_client, serve, stop, wait_routed


@pytest.fixture
def served(project, engineer, asgi_server):
    made = []

    def make(**kwargs):
        s = serve(project, engineer, **kwargs)
        made.append(s)
        with gateway_client(asgi_server, s.raw_key) as client:
            wait_routed(client, s.dep.name)
        return s

    yield make
    for s in made:
        stop(s)


@pytest.fixture
def gw(asgi_server):
    clients = []

    def make(raw_key):
        client = gateway_client(asgi_server, raw_key)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()
