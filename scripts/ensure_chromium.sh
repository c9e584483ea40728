#!/usr/bin/env bash
# Playwright drives Debian's chromium package; install it if it is missing.
set -euo pipefail
if [ -n "${PORTAL_CHROMIUM:-}" ] && [ -x "$PORTAL_CHROMIUM" ]; then exit 0; fi
if command -v chromium >/dev/null 2>&1; then exit 0; fi
echo "Installing Debian's chromium for the browser tests..."
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
command -v chromium
