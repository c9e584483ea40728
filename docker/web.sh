#!/bin/sh
# The web server (the image's default command). uvicorn rewrites the client address and
# scheme from X-Forwarded-For/-Proto only for the proxies in PORTAL_TRUSTED_PROXIES, the
# same list portal.client_ip reads (default: none; never "*", which lets any client choose
# the address that the login lockout and the access log record). Extra arguments go to
# uvicorn; the tests start the server through this script.
set -eu
# The workers add up their /metrics through files in one folder (prometheus-client's
# multiprocess mode); a folder of this start's own, or the *.db files of a given one cleared,
# so a restart does not count twice.
if [ -z "${PROMETHEUS_MULTIPROC_DIR:-}" ]; then
  PROMETHEUS_MULTIPROC_DIR="${TMPDIR:-/tmp}/portal-metrics-$$"
fi
mkdir -p "$PROMETHEUS_MULTIPROC_DIR"
find "$PROMETHEUS_MULTIPROC_DIR" -maxdepth 1 -name '*.db' -delete
export PROMETHEUS_MULTIPROC_DIR
exec "${PYTHON:-python}" -m uvicorn portal.asgi:application \
  --host "${PORTAL_WEB_HOST:-0.0.0.0}" --port "${PORTAL_WEB_PORT:-8000}" \
  --workers "${PORTAL_WEB_WORKERS:-2}" \
  --proxy-headers --forwarded-allow-ips "${PORTAL_TRUSTED_PROXIES:-}" "$@"
