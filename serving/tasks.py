"""Celery entry points of serving: ids in, one service call each."""
