import os

import django
from django.urls import get_resolver

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
# Django must be set up before anything imports models (the consumers do); this is what
# get_asgi_application() does, with the handler that enters the middleware chain once.
django.setup(set_prefix=False)

from portal.asgi_limits import BodySizeLimit  # noqa: E402
from portal.asgi_threads import ReusedRequestThreads, SyncChainASGIHandler  # noqa: E402

django_asgi_app = SyncChainASGIHandler()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from portal.routing import websocket_urlpatterns  # noqa: E402
from serving.gateway import GatewayApp  # noqa: E402

# Load the URLconf (and with it every view module and what they import: scipy, pandas) now,
# not on each worker's first request, where it stalls everyone for a second or two.
get_resolver().url_patterns  # noqa: B018 - the lookup is what loads them

django_http = BodySizeLimit(ReusedRequestThreads(django_asgi_app))
gateway = GatewayApp()


async def http_app(scope, receive, send):
    """The OpenAI-compatible gateway answers /v1/ ahead of Django: an async app of its own,
    with no middleware, session or thread hand-over on the path of each completion."""
    if scope["path"].startswith("/v1/"):
        return await gateway(scope, receive, send)
    # Outermost: a refused body costs no thread, session or database work.
    return await django_http(scope, receive, send)


application = ProtocolTypeRouter(
    {
        "http": http_app,
        "websocket": AllowedHostsOriginValidator(
            AuthMiddlewareStack(URLRouter(websocket_urlpatterns))
        ),
    }
)
