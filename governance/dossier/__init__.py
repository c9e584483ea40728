"""Deployment dossiers: a deterministic, signed zip per model version.

`signing`, `bundle` and `verify` are plain Python (no Django), so a dossier can be checked
anywhere with this package and `cryptography`; the rest gathers the portal's data.
"""
