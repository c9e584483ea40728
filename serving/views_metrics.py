"""`/metrics` for Prometheus: the gateway's request, error, token and latency metrics
(serving/metrics.py), for loopback and the scrapers named in PORTAL_METRICS_ALLOWED_IPS
only: the series name every deployment and its traffic."""

import ipaddress
import os
from collections.abc import Iterator

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.multiprocess import MultiProcessCollector

from core.client_ip import client_ip_get
from serving import metrics as _families  # noqa: F401 - registers them in every process
from serving.selectors.metrics import deployment_names


def _scraper_allowed(request: HttpRequest) -> bool:
    try:
        address = ipaddress.ip_address(client_ip_get(request) or "")
    except ValueError:
        return False
    return address.is_loopback or any(
        address in network for network in settings.PORTAL_METRICS_ALLOWED_IPS
    )


class _Scrape:
    """This scrape's series: the processes' metrics and the deployments' names."""

    def __init__(self, source: CollectorRegistry, names: dict[int, tuple[str, int]]):
        self.source = source
        self.names = names

    def collect(self) -> Iterator[Metric]:
        yield from self.source.collect()
        info = GaugeMetricFamily(
            "portal_gateway_deployment_info",
            "Each deployment's name and project, for joins on the `deployment` label.",
            labels=["deployment", "name", "project"],
        )
        for pk, (name, project_id) in self.names.items():
            info.add_metric([str(pk), name, str(project_id)], 1)
        yield info


def _source() -> CollectorRegistry:
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return REGISTRY
    # Every server process's values, added up from their files.
    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    return registry


@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    if not _scraper_allowed(request):
        return HttpResponse("Forbidden\n", status=403, content_type="text/plain")
    output = generate_latest(_Scrape(_source(), deployment_names()))
    return HttpResponse(output, content_type=CONTENT_TYPE_LATEST)
