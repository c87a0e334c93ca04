# syntax=docker/dockerfile:1
#
# Image of the seed_growth Dagster code location.
#
# One image serves three roles (docs/deployment.md):
#   * the user-code gRPC server of the Dagster Helm chart (this image's CMD; the chart passes its own
#     `dagster code-server start ...` args, so the image has no ENTRYPOINT that could get in the way);
#   * the pods the K8sRunLauncher starts for each run (the chart runs `dagster api execute_run` in it);
#   * the plain CronJob `fit-bayesian-growth` (`python -m seed_growth.jobs.fit_bayesian_growth`).
#
# Build from the repository root:
#   docker build -t REGISTRY/seed-growth/dagster:TAG .
# `pip install .` installs both top-level packages of the project, seed_growth and growth_engine (the Dagster
# side uses the engine's numpy/scipy statistics; its optional sampler, the `sampler` extra, is not needed).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

############################## build: a virtualenv with the project installed ##############################
FROM ${PYTHON_IMAGE} AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src
# .dockerignore keeps the context to what the project needs (no .git, .venv, tests, deploy files).
COPY . .

# dagster-k8s (K8sRunLauncher) and dagster-postgres (run/event storage) are required in the image; they
# are pyproject dependencies already and are named here so a later edit there cannot drop them silently.
RUN pip install . dagster-k8s dagster-postgres \
 && pip check \
 && python -c "import seed_growth, growth_engine, dagster_k8s, dagster_postgres"

############################## runtime ##############################
FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="seed-growth-dagster" \
      org.opencontainers.image.description="seed_growth Dagster code location (code server, run worker, CronJob)"

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DAGSTER_HOME=/opt/dagster/dagster_home

# A fixed, numeric, unprivileged user: the Kubernetes manifests set runAsUser/runAsGroup 10001 to match.
RUN groupadd --system --gid 10001 dagster \
 && useradd --system --uid 10001 --gid 10001 --home-dir /opt/dagster --no-create-home \
        --shell /usr/sbin/nologin dagster \
 && mkdir -p /opt/dagster/dagster_home /opt/dagster/app \
 && chown -R 10001:10001 /opt/dagster

COPY --from=build /opt/venv /opt/venv

WORKDIR /opt/dagster/app
USER 10001:10001

EXPOSE 3030

CMD ["dagster", "code-server", "start", "-h", "0.0.0.0", "-p", "3030", "-m", "seed_growth.definitions"]
