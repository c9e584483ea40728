#!/usr/bin/env bash
# WeasyPrint (dossier PDFs) needs Pango from Debian, and HarfBuzz's subsetter: without it
# WeasyPrint falls back to fontTools, whose font subsets differ from one build to the next,
# and a rebuilt dossier would no longer be byte-identical. Install what is missing.
set -euo pipefail
PY="${1:-.venv/bin/python}"
CHECK='import warnings; warnings.simplefilter("ignore")
from weasyprint.text.ffi import harfbuzz_subset
assert harfbuzz_subset is not None, "libharfbuzz-subset is missing"'
if "$PY" -c "$CHECK" >/dev/null 2>&1; then exit 0; fi
echo "Installing Debian's Pango and HarfBuzz libraries for WeasyPrint..."
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq \
    libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 fonts-dejavu-core >/dev/null
"$PY" -c "$CHECK"
