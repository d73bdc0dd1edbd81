"""The SCRM project package: settings, Celery app, URLs and the few cross-app helpers."""

from scrm.celery import app as celery_app

__all__ = ["celery_app"]
