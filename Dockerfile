# syntax=docker/dockerfile:1
#
# inbox-daemon in a container.
#
#   docker build -t inbox-daemon .
#   docker run -d --name inbox-daemon --stop-timeout 40 \
#     -v "$PWD/config:/config:ro" -v inbox-data:/data \
#     -e IMAP_PASSWORD=... inbox-daemon
#
# /config holds inbox.toml (and rules.toml, templates/) and may be mounted read-only; /data is the
# writable volume: point the SQLite database there (`url = "sqlite:////data/inbox.db"`) or use
# PostgreSQL. Secrets come from environment variables or files (password_env / password_file),
# never from the image. The HTTP server binds 127.0.0.1 unless the configuration says otherwise;
# publish its port only after binding 0.0.0.0 in the config. `--stop-timeout` should exceed
# service.shutdown_grace_s (30 s by default) so SIGTERM can drain in-flight batches.

ARG PYTHON_IMAGE=python:3.11-slim

# ---- build: install the package and its dependencies into a virtual environment --------------
FROM ${PYTHON_IMAGE} AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/inbox-daemon
WORKDIR /src
# Only what the package is built from; .dockerignore keeps tests, caches and local data out.
COPY pyproject.toml README.md ./
COPY inbox_daemon ./inbox_daemon
COPY adapters ./adapters
COPY config ./config
COPY migrations ./migrations
RUN /opt/inbox-daemon/bin/pip install --no-cache-dir .

# ---- runtime: the virtual environment alone, run as an unprivileged user ---------------------
FROM ${PYTHON_IMAGE}

LABEL org.opencontainers.image.title="inbox-daemon" \
      org.opencontainers.image.description="Polls support mailboxes and social channels, triages every message and queues it for support staff." \
      org.opencontainers.image.licenses="Apache-2.0"

ENV PATH="/opt/inbox-daemon/bin:${PATH}" \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

# The build stage's source tree, pip caches and build dependencies stay behind: only the
# virtual environment (same interpreter path in both stages) is copied.
COPY --from=build /opt/inbox-daemon /opt/inbox-daemon

RUN groupadd --system --gid 10001 inbox \
    && useradd --system --uid 10001 --gid inbox --home-dir /data --no-create-home \
       --shell /usr/sbin/nologin inbox \
    && mkdir -p /config /data \
    && chown inbox:inbox /data

USER inbox:inbox
WORKDIR /data
VOLUME ["/config", "/data"]

# Relies on `status` exiting non-zero when the daemon is not running or is unhealthy.
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
    CMD ["inbox-daemon", "status", "--config", "/config/inbox.toml"]

ENTRYPOINT ["inbox-daemon"]
CMD ["run", "--config", "/config/inbox.toml"]
