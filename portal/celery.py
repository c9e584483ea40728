import os

from celery import Celery
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

app = Celery("portal")
app.config_from_object("django.conf:settings", namespace="CELERY")
# `default` serves quick jobs (checks, exports, pushes); `gpu` serves training and inference.
app.conf.task_queues = (Queue("default"), Queue("gpu"))
app.autodiscover_tasks()
