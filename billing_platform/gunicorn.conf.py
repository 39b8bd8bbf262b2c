"""gunicorn's settings for the web process: `gunicorn -c billing_platform/gunicorn.conf.py`
(the Procfile, the Dockerfile and bench/ run it so). Read from the environment; see README.md
(Configuration) and billing_platform/buffering.py for why there are two kinds of threads."""

import os

wsgi_app = "billing_platform.wsgi:served_application"
bind = [f"{os.environ.get('WEB_BIND', '0.0.0.0')}:{os.environ.get('PORT', '8000')}"]  # noqa: S104 (a container's port)
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
# Threads that read requests and write answers: a client that stalls holds one of these, at
# most WEB_BODY_TIMEOUT seconds, never one of the WEB_THREADS that run Django.
threads = int(os.environ.get("WEB_CLIENT_THREADS", "64"))
# The threaded worker with its refusals in the API's error envelope, and the logger that keeps
# secrets out of the access and error logs (billing_platform/gunicorn_worker.py).
worker_class = "billing_platform.gunicorn_worker.Worker"
logger_class = "billing_platform.gunicorn_worker.Logger"
