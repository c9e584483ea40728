import http.client
import re
import sys
import time
import urllib.parse

import pytest
from axes.models import AccessAttempt, AccessLog
from django.core.exceptions import ImproperlyConfigured
from django.test import Client, RequestFactory, override_settings

from core.client_ip import client_ip_get
from core.models import Role
from governance.models import DossierDownload
from governance.services.dossiers import dossier_request
from portal.env import env_networks
from tests.governance.factories import lineage_fixture
from tests.portal.factories import MembershipFactory, UserFactory, password_for
from tests.support import servers

# The test server trusts 127.0.0.2 as its proxy; a client on 127.0.0.1 is a stranger.
PROXY, STRANGER = "127.0.0.2", "127.0.0.1"


def _request_meta(peer, forwarded=None):
    extra = {"REMOTE_ADDR": peer}
    if forwarded is not None:
        extra["HTTP_X_FORWARDED_FOR"] = forwarded
    return RequestFactory().get("/", **extra)


@pytest.mark.parametrize(
    ("peer", "forwarded", "expected"),
    [
        ("198.51.100.1", "203.0.113.5", "198.51.100.1"),  # not a proxy: header ignored
        ("10.0.0.2", None, "10.0.0.2"),
        ("10.0.0.2", "203.0.113.5", "203.0.113.5"),
        ("10.0.0.2", "1.1.1.1, 203.0.113.5", "203.0.113.5"),  # leftmost entry is forgeable
        ("10.0.0.2", "1.1.1.1, 203.0.113.5, 10.0.0.9", "203.0.113.5"),  # two proxies
        ("10.0.0.2", "203.0.113.5:4431", "203.0.113.5"),
        ("10.0.0.2", "[2001:db8::7]:443", "2001:db8::7"),
        ("10.0.0.2", "203.0.113.5, not-an-ip", "10.0.0.2"),
        ("10.0.0.2", "10.0.0.7", "10.0.0.7"),
    ],
)
def test_client_ip_believes_forwarded_for_only_from_trusted_proxies(
    monkeypatch, peer, forwarded, expected
):
    monkeypatch.setenv("PORTAL_TRUSTED_PROXIES", "10.0.0.0/8")
    with override_settings(PORTAL_TRUSTED_PROXIES=env_networks("PORTAL_TRUSTED_PROXIES")):
        assert client_ip_get(_request_meta(peer, forwarded)) == expected


def test_client_ip_ignores_forwarded_for_by_default():
    assert client_ip_get(_request_meta("127.0.0.1", "203.0.113.5")) == "127.0.0.1"


def test_trusted_proxies_setting_refuses_a_malformed_entry(monkeypatch):
    monkeypatch.setenv("PORTAL_TRUSTED_PROXIES", "10.0.0.1, not-a-net")

    with pytest.raises(ImproperlyConfigured, match="not-a-net"):
        env_networks("PORTAL_TRUSTED_PROXIES")


# --- the production web server, over real HTTP --------------------------------------------


@pytest.fixture(scope="module")
def web_server(test_database_url, server_log_dir):
    """docker/web.sh, the image's command, trusting only PROXY."""
    port = servers.free_port()
    env = servers.child_env(
        test_database_url,
        PYTHON=sys.executable,
        PORTAL_WEB_HOST="127.0.0.1",
        PORTAL_WEB_PORT=str(port),
        PORTAL_WEB_WORKERS="1",
        PORTAL_TRUSTED_PROXIES=PROXY,
    )
    child = servers.ChildProcess(
        f"web-sh-{port}",
        ["sh", "docker/web.sh", "--no-access-log", "--log-level", "warning"],
        env,
        server_log_dir,
    )
    deadline = time.monotonic() + 60
    while True:
        child.check_alive()
        try:
            if _http(port, STRANGER, "GET", "/healthz/")[0] == 200:
                break
        except OSError:
            pass
        if time.monotonic() > deadline:
            child.stop()
            raise RuntimeError(f"docker/web.sh did not answer:\n{child.log_tail()}")
        time.sleep(0.1)
    yield port
    child.stop()


def _http(port, source, method, path, headers=None, body=None):
    connection = http.client.HTTPConnection(
        "127.0.0.1", port, timeout=30, source_address=(source, 0)
    )
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.getheaders(), response.read()
    finally:
        connection.close()


def _login(port, source, username, password, forwarded):
    status, headers, body = _http(port, source, "GET", "/accounts/login/")
    csrf = re.search(rb"csrftoken=([A-Za-z0-9]+)", b"; ".join(v.encode() for _, v in headers))
    token = csrf.group(1).decode()
    form = urllib.parse.urlencode(
        {"username": username, "password": password, "csrfmiddlewaretoken": token}
    )
    status, _, _ = _http(
        port,
        source,
        "POST",
        "/accounts/login/",
        headers={
            "Cookie": f"csrftoken={token}",
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Forwarded-For": forwarded,
        },
        body=form,
    )
    return status


@pytest.mark.django_db(transaction=True)
def test_forged_forwarded_for_neither_dodges_nor_aims_the_login_lockout(web_server):
    victim = UserFactory(username="victim")
    victims_address = "198.51.100.77"

    # A stranger names the victim's address in the header while guessing the password...
    guesses = [
        _login(web_server, STRANGER, "victim", "wrong", forwarded=victims_address) for _ in range(5)
    ]
    # ...and then claims a fresh address to get around the lockout.
    dodge = _login(web_server, STRANGER, "victim", password_for("victim"), "203.0.113.200")

    assert (guesses, dodge) == ([200] * 4 + [429], 429)
    attempts = AccessAttempt.objects.filter(username="victim")
    assert {a.ip_address for a in attempts} == {STRANGER}
    # The victim, behind the trusted proxy at their own address, is not locked out.
    assert _login(web_server, PROXY, "victim", password_for("victim"), victims_address) == 302
    assert AccessLog.objects.get(username=victim.username).ip_address == victims_address


@pytest.mark.django_db(transaction=True)
def test_forged_forwarded_for_does_not_reach_the_access_log_but_a_proxys_does(web_server):
    engineer = MembershipFactory(role=Role.ENGINEER).user
    project = engineer.memberships.get().project
    compliance = MembershipFactory(project=project, role=Role.COMPLIANCE).user
    version = lineage_fixture(project, engineer, n_items=4).version
    dossier = dossier_request(actor=compliance, version=version, run_now=True)
    browser = Client()
    browser.force_login(compliance)
    cookie = f"sessionid={browser.cookies['sessionid'].value}"
    path = f"/governance/dossiers/{dossier.pk}/download/"

    forged = _http(
        web_server, STRANGER, "GET", path, {"Cookie": cookie, "X-Forwarded-For": "203.0.113.66"}
    )
    proxied = _http(
        web_server, PROXY, "GET", path, {"Cookie": cookie, "X-Forwarded-For": "203.0.113.9"}
    )

    assert (forged[0], proxied[0]) == (200, 200)
    logged = list(DossierDownload.objects.order_by("pk").values_list("ip_address", flat=True))
    assert logged == [STRANGER, "203.0.113.9"]
