# syntax=docker/dockerfile:1
# One image for every ledgerflow role: `serve` (the edge, default), `worker`, `token`,
# `produce`, ... The role is the command: `docker run ledgerflow worker`.
# docker-compose.yml wires the roles to Kafka and Redis; see docs/docker.md.

# ---- build: install the package and its pinned dependencies into a venv -----------------
FROM python:3.11-slim AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

# Every dependency ships a binary wheel for linux/amd64. On other architectures
# faust-streaming 0.15.3 has only a source distribution: a C compiler lets it build its
# speed-ups (without one it still installs, as pure Python). The compiler stays in this
# stage; the runtime image below never has it.
ARG TARGETARCH
RUN if [ "$TARGETARCH" != "amd64" ]; then \
        apt-get update \
        && apt-get install -y --no-install-recommends gcc libc6-dev \
        && rm -rf /var/lib/apt/lists/*; \
    fi

RUN python -m venv /opt/ledgerflow
WORKDIR /src

# constraints.txt pins every transitive dependency (the same file `make setup` uses).
# README.md* is a wildcard so that the build does not depend on the README existing.
COPY pyproject.toml constraints.txt README.md* ./
# ledgerflow/schemas is a symlink to the top-level schemas/: copy both.
COPY schemas/ schemas/
COPY ledgerflow/ ledgerflow/
RUN /opt/ledgerflow/bin/pip install -c constraints.txt . \
    && /opt/ledgerflow/bin/python -c \
       "import ledgerflow.cli, ledgerflow.contracts.codec as c; c.require_fast_codec()"

# ---- runtime: the venv only, run by an unprivileged user ---------------------------------
FROM python:3.11-slim

ARG UID=10001
RUN groupadd --system --gid "$UID" ledgerflow \
    && useradd --system --uid "$UID" --gid ledgerflow --create-home --home-dir /home/ledgerflow \
       --shell /usr/sbin/nologin ledgerflow \
    && install -d -o ledgerflow -g ledgerflow -m 0750 /var/lib/ledgerflow

COPY --from=build /opt/ledgerflow /opt/ledgerflow

# Inside a container the edge must listen on every interface, not only loopback.
# LEDGERFLOW_STATE_DIR holds the dev signing keys and jwks.json: docker-compose.yml mounts
# a named volume here (Docker gives a new volume this directory's owner, so the
# unprivileged user can write it).
ENV PATH="/opt/ledgerflow/bin:$PATH" \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    LEDGERFLOW_HTTP=0.0.0.0:8700 \
    LEDGERFLOW_STATE_DIR=/var/lib/ledgerflow

USER ledgerflow
# The faust worker keeps a small data directory in its working directory: make it ours.
WORKDIR /home/ledgerflow
EXPOSE 8700

# No HEALTHCHECK here: the same image runs roles with different notions of health, so
# docker-compose.yml declares one per service. The image has no curl; probe the edge with
#   python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8700/healthz', timeout=3)"
ENTRYPOINT ["ledgerflow"]
CMD ["serve"]
