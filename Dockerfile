# The platform image: web (gunicorn), worker and beat share it; the Procfile names each command.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# pango (with its font stack) is what weasyprint needs to render invoice PDFs.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 fonts-dejavu-core \
    && rm -rf /var/lib/apt/lists/*

RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /app --shell /usr/sbin/nologin app

WORKDIR /app
COPY requirements.txt .
RUN pip install -r requirements.txt

COPY --chown=app:app . .
# collectstatic reads settings only; no database is contacted.
RUN DEBUG=false SECRET_KEY=collectstatic-only-not-a-runtime-secret DATABASE_URL=postgres://build@localhost/build \
    python manage.py collectstatic --noinput \
    && chown -R 10001:10001 /app/staticfiles

USER 10001:10001
ENV PORT=8000 WEB_BIND=0.0.0.0
EXPOSE 8000

# web by default (gunicorn reads PORT, WEB_BIND, WEB_CONCURRENCY, WEB_CLIENT_THREADS from the
# environment through its config file); run the worker with `celery -A billing_platform worker`
# and beat with `celery -A billing_platform beat`.
CMD ["gunicorn", "--config", "billing_platform/gunicorn.conf.py", "--access-logfile", "-"]
