import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "billing_platform.settings")

application = get_wsgi_application()


def _served_application():
    from django.conf import settings

    from billing_platform.buffering import BufferedApplication

    return BufferedApplication(
        application,
        app_threads=settings.WEB_THREADS,
        body_timeout=settings.WEB_BODY_TIMEOUT,
        max_body_bytes=settings.MAX_REQUEST_BODY_BYTES,
    )


# What gunicorn serves (billing_platform/gunicorn.conf.py): bodies read whole, within
# WEB_BODY_TIMEOUT, by gunicorn's threads; Django run by WEB_THREADS threads of its own.
served_application = _served_application()
