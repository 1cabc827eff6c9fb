# One image for both console scripts: `threshold-operator` (the operator Deployment) and
# `threshold-worker` (prepare and work pods). Runs as uid 10001 on a read-only root file
# system; /tmp is the only place it writes (mount an emptyDir there).
#
# BASE_IMAGE: any Debian-like image with python3 (>= 3.11) and python3-venv. CI builds a
# local Debian base when no registry is reachable (tests/docker_support.py).
ARG BASE_IMAGE=python:3.12-slim

FROM ${BASE_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1
RUN python3 -m venv /opt/venv && /opt/venv/bin/pip install --upgrade pip
# Dependencies first, from pyproject.toml alone, so that code and docs changes do not
# reinstall them.
COPY pyproject.toml /src/
RUN mkdir -p /src/worker/threshold_worker /src/operator/threshold_operator \
    && touch /src/README.md /src/worker/threshold_worker/__init__.py /src/operator/threshold_operator/__init__.py \
    && /opt/venv/bin/pip install '/src[operator,s3]' \
    && /opt/venv/bin/pip uninstall -y threshold-operator
COPY README.md /src/
COPY worker /src/worker
COPY operator /src/operator
RUN /opt/venv/bin/pip install --no-deps /src \
    && /opt/venv/bin/python -m compileall -q /opt/venv/lib \
    && find /opt/venv -name '*.pyc' -path '*/tests/*' -delete

FROM ${BASE_IMAGE}
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="threshold-operator" \
      org.opencontainers.image.description="Blockwise thresholding of zarr volumes on Kubernetes: operator and worker" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="BSD-3-Clause" \
      org.opencontainers.image.source="https://github.com/threshold-operator/threshold-operator"
COPY --from=build /opt/venv /opt/venv
# A passwd entry for the uid: kopf (getpass) and other tools look the user up by uid.
RUN echo 'threshold:x:10001:10001:threshold-operator:/tmp:/usr/sbin/nologin' >> /etc/passwd \
    && echo 'threshold:x:10001:' >> /etc/group
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    TMPDIR=/tmp
USER 10001:10001
WORKDIR /tmp
EXPOSE 8080 9090
CMD ["threshold-operator", "run"]
