"""The events socket against the real server (uvicorn, Channels on Redis): project
events need a role that reads them, and losing it closes the socket."""

import json
import time

import pytest
from django.test import Client
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from core.models import Membership, Role
from core.realtime import push_to_project
from core.services import membership_remove
from tests.portal.factories import MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db(transaction=True)


def _socket(asgi_server, user):
    client = Client()
    client.force_login(user)
    cookie = f"sessionid={client.cookies['sessionid'].value}"
    url = asgi_server.replace("http://", "ws://") + "/ws/events/"
    return connect(url, additional_headers={"Cookie": cookie, "Origin": asgi_server})


def _answer(ws, timeout=10.0) -> dict:
    return json.loads(ws.recv(timeout=timeout))


def _member(project, username, *roles):
    user = UserFactory(username=username)
    for role in roles:
        MembershipFactory(project=project, user=user, role=role)
    return user


def _close_code(ws, timeout=10.0) -> int | None:
    """Wait (up to `timeout`) for the server to close the socket; its close code."""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ws.recv(timeout=max(deadline - time.monotonic(), 0.01))
    except TimeoutError:
        return None
    except ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd else None
    return None


@pytest.mark.parametrize("role", [Role.ANNOTATOR, Role.REVIEWER, Role.ADJUDICATOR])
def test_a_role_that_does_not_read_project_events_cannot_subscribe(asgi_server, project, role):
    user = _member(project, f"ws-{role}", role)

    with _socket(asgi_server, user) as ws:
        ws.send(json.dumps({"subscribe": project.pk}))
        answer = _answer(ws)
        push_to_project(project_id=project.pk, event={"type": "training.job", "job": 1})

        assert answer["type"] == "error"
        with pytest.raises(TimeoutError):
            ws.recv(timeout=1)


def test_removing_the_member_closes_their_socket(asgi_server, project, admin):
    engineer = _member(project, "ws-eng", Role.ENGINEER)

    with _socket(asgi_server, engineer) as ws:
        ws.send(json.dumps({"subscribe": project.pk}))
        assert _answer(ws) == {"type": "subscribed", "project": project.pk}

        membership_remove(
            membership=Membership.objects.get(user=engineer, project=project),
            removed_by=admin,
        )

        assert _close_code(ws) == 4403


def test_losing_one_of_two_reading_roles_keeps_the_socket(asgi_server, project, admin):
    user = _member(project, "ws-two", Role.ENGINEER, Role.COMPLIANCE)

    with _socket(asgi_server, user) as ws:
        ws.send(json.dumps({"subscribe": project.pk}))
        assert _answer(ws)["type"] == "subscribed"

        membership_remove(
            membership=Membership.objects.get(user=user, project=project, role=Role.ENGINEER),
            removed_by=admin,
        )
        push_to_project(project_id=project.pk, event={"type": "training.job", "job": 7})

        assert _answer(ws) == {"type": "training.job", "job": 7}
