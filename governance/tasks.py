"""Celery entry points for governance (dossier builds)."""
