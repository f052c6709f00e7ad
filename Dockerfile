# Connectra Jobs: one image for every role; RUN_COMMAND picks the role, as in the seed:
#   RUN_COMMAND="api" | "jobs first_time" | "jobs retry" | "migrate" | "run"
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app

COPY pyproject.toml README.md LICENSE ./
COPY connectra ./connectra
COPY migrations ./migrations
# The embedded extra makes RUN_COMMAND=run work with no services (embedded PostgreSQL, local S3).
RUN pip install '.[embedded]' && useradd --system --create-home connectra

USER connectra
ENV RUN_COMMAND="jobs first_time" API_HOST=0.0.0.0 METRICS_HOST=0.0.0.0 \
    EMBEDDED_DATA_DIR=/home/connectra/pgdata
# 8080: the API (`api`, `run`); 9090: metrics and health of a runner (`jobs first_time|retry`).
EXPOSE 8080 9090
# Asks /readyz of whichever the role serves (README "Operations").
HEALTHCHECK --interval=30s --timeout=10s --start-period=30s --retries=3 \
    CMD ["connectra", "healthcheck"]
# `exec` so that SIGTERM from `docker stop` reaches connectra (graceful shutdown).
CMD ["sh", "-c", "exec connectra $RUN_COMMAND"]
