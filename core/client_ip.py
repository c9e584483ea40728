"""The client's address, decided in one place: django-axes (the login lockout key), the
dossier access log and anything else that records who called ask `client_ip_get`.

Any client can send `X-Forwarded-For`, so the header is believed only when the TCP peer is
a proxy named in PORTAL_TRUSTED_PROXIES (default: none). The web server (docker/web.sh)
gives uvicorn the same list, so its own rewriting of the peer address agrees with this."""

import ipaddress

from django.conf import settings
from django.http import HttpRequest

_Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def _parse(value: str) -> _Address | None:
    """An address from one X-Forwarded-For entry (`1.2.3.4`, `1.2.3.4:80`, `[::1]:80`)."""
    value = value.strip()
    if value.startswith("[") and "]" in value:
        value = value[1 : value.index("]")]
    elif value.count(":") == 1:
        value = value.split(":", 1)[0]
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        return None


def _trusted(address: _Address) -> bool:
    return any(address in network for network in settings.PORTAL_TRUSTED_PROXIES)


def client_ip_get(request: HttpRequest) -> str | None:
    """The address of whoever sent `request`: the TCP peer, unless the peer is a trusted
    proxy; then the nearest X-Forwarded-For entry (reading from the right, as each proxy
    appends the address it received from) that is not itself a trusted proxy."""
    peer = request.META.get("REMOTE_ADDR") or None
    address = _parse(peer) if peer else None
    if address is None or not _trusted(address):
        return peer
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    for entry in reversed(forwarded.split(",") if forwarded else []):
        hop = _parse(entry)
        if hop is None:
            # A malformed entry: nothing to its left was vouched for by a trusted proxy.
            break
        address = hop
        if not _trusted(hop):
            break
    return str(address)
