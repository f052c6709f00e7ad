# Connectra Jobs: one image for every role; RUN_COMMAND picks the role, as in the seed:
#   RUN_COMMAND="api" | "jobs first_time" | "jobs retry" | "migrate" | "run"
# Production-shaped: the locked dependencies (uv.lock, the set `make` installs for
# development) without any extra, so no embedded PostgreSQL or local S3: set DATABASE_URL and
# S3_ENDPOINT_URL or AWS credentials (compose.yaml does). Built from the repository root.
ARG PYTHON_IMAGE=python:3.11-slim

# -- builder: the locked dependencies, then the project, into one venv ------------------------
FROM ${PYTHON_IMAGE} AS builder
# The same uv as the Makefile's UV_VERSION (tests/unit/test_deployment.py checks it).
ARG UV_VERSION=0.13.9
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    UV_PROJECT_ENVIRONMENT=/opt/connectra UV_PYTHON_DOWNLOADS=never \
    UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_NO_CACHE=1
RUN pip install "uv==${UV_VERSION}"
WORKDIR /src
# Dependencies first, in a layer of their own that changes only with the lock. `--locked`
# stops the build when uv.lock does not match pyproject.toml; no `--extra`: no extras.
COPY pyproject.toml uv.lock ./
RUN uv sync --locked --no-dev --no-install-project --python /usr/local/bin/python
COPY README.md LICENSE ./
COPY connectra ./connectra
COPY migrations ./migrations
# The project as a wheel, not editable: the migrations travel inside it
# (connectra/_migrations), so the final stage needs nothing of /src.
RUN uv sync --locked --no-dev --no-editable --python /usr/local/bin/python

# -- the image: the venv alone, run by a user without privileges ------------------------------
FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="Connectra Jobs" \
      org.opencontainers.image.source="https://github.com/connectra/connectra-jobs" \
      org.opencontainers.image.licenses="MIT"
RUN groupadd --system --gid 10001 connectra \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin connectra
COPY --from=builder /opt/connectra /opt/connectra
ENV PATH=/opt/connectra/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    RUN_COMMAND="jobs first_time" API_HOST=0.0.0.0 METRICS_HOST=0.0.0.0
# The working folder holds no `.env` (the settings come from the environment) and is not
# writable: nothing in these roles writes files.
WORKDIR /app
# Numeric, so that Kubernetes' runAsNonRoot can check it.
USER 10001:10001
# 8080: the API (`api`, `run`); 9090: metrics and health of a runner (`jobs first_time|retry`).
EXPOSE 8080 9090
# Asks /readyz of whichever the role serves (docs/operations/health.md). Compose turns it
# off for the one-shot `migrate`.
HEALTHCHECK --interval=30s --timeout=10s --start-period=30s --retries=3 \
    CMD ["connectra", "healthcheck"]
# `exec` so that SIGTERM from `docker stop` reaches connectra (graceful shutdown);
# $RUN_COMMAND unquoted so that "jobs first_time" is two words. A command given to
# `docker run` / `docker compose run` (e.g. `connectra keys create ...`) replaces this one.
CMD ["sh", "-c", "exec connectra $RUN_COMMAND"]
