# The corrstack demo services (api, analysis), the Celery worker and the load generator. The
# services run `uvicorn --workers ${API_WORKERS:-1}` in compose, with their metrics on a tmpfs
# (PROMETHEUS_MULTIPROC_DIR, docs/stack.md "Several workers per service").
FROM python:3.11.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONPATH=/app

WORKDIR /app

# Dependencies first, so editing demo/ does not reinstall them.
COPY pyproject.toml README.md ./
COPY instrumentation ./instrumentation
RUN pip install --no-cache-dir ".[celery]"

COPY demo ./demo

# Non-root. The log directory is created here with its owner, so the named `logs` volume
# mounted over it starts out writable by this user (Docker copies ownership into an empty
# named volume).
RUN groupadd --system --gid 10001 corrstack \
    && useradd --system --uid 10001 --gid corrstack --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin corrstack \
    && mkdir -p /var/log/corrstack \
    && chown corrstack:corrstack /var/log/corrstack
USER corrstack:corrstack

EXPOSE 8000 8001
CMD ["uvicorn", "demo.api:app", "--host", "0.0.0.0", "--port", "8000"]
