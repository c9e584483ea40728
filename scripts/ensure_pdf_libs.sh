#!/usr/bin/env bash
# WeasyPrint (dossier PDFs) needs Pango from Debian; install it if the import fails.
set -euo pipefail
PY="${1:-.venv/bin/python}"
if "$PY" -c "import weasyprint" >/dev/null 2>&1; then exit 0; fi
echo "Installing Debian's Pango libraries for WeasyPrint..."
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq \
    libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 fonts-dejavu-core >/dev/null
"$PY" -c "import weasyprint"
