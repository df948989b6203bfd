# marathon-pullsecret-controller container image.
#
#   docker build -t registry.example.com/marathon-pullsecret-controller:0.1.0 .
#   docker run --rm -v "$PWD/config.yaml:/etc/pullsecret-controller/config.yaml:ro" \
#       -p 9102:9102 registry.example.com/marathon-pullsecret-controller:0.1.0
#
# The config must listen on all interfaces inside a container (server.listen: 0.0.0.0:9102).
# Linted by hadolint in the test suite (tests/packaging); no build runs in CI. Both stages use
# the same pinned base, so the venv's interpreter path exists in the runtime stage.
# The runtime image has no pip, setuptools or wheel (nothing installs packages at run time, and
# image scanners flag their old bundled versions).

# -- build: a self-contained virtualenv under /opt/venv -----------------------------------------
FROM python:3.11.14-slim-bookworm AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY controller ./controller
# pip builds the wheel in an isolated environment; the venv's own pip and setuptools (from
# ensurepip) are not needed at run time, so they go once the install is checked. So do the test
# suites some dependencies ship inside their package (kazoo/tests, jsonschema/tests, ...): nothing
# imports them at run time, and they only grow the image and what scanners read.
RUN pip install --no-cache-dir . \
    && pip check \
    && /opt/venv/bin/python -m pip uninstall --yes pip setuptools wheel \
    && find /opt/venv/lib -type d -path '*/site-packages/*' -name tests -prune -exec rm -rf {} +

# -- runtime: the slim interpreter plus the venv, run as a fixed non-root uid ------------------
FROM python:3.11.14-slim-bookworm AS runtime

# The base image's own pip, setuptools and wheel (in /usr/local) go too. The uid is above the
# system range, so the user is a regular one (useradd --system would warn); --no-log-init keeps
# lastlog/faillog from growing a sparse record for a high uid.
ARG APP_UID=10001
RUN /usr/local/bin/python -m pip uninstall --yes pip setuptools wheel \
    && groupadd --gid "${APP_UID}" controller \
    && useradd --no-log-init --uid "${APP_UID}" --gid controller --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin controller

COPY --from=build /opt/venv /opt/venv

# /opt/credential-helpers is where docker-credential-<name> binaries are mounted (the Helm chart's
# credentialHelpers, or `docker run -v ./helpers:/opt/credential-helpers:ro`): a registry with
# `helper: <name>` finds them on PATH. It comes after the venv, so nothing mounted there can stand
# in for the controller or its Python. HEALTHCHECK_CONFIG is read by the HEALTHCHECK only: set it
# too when `run --config` names another file.
ENV PATH=/opt/venv/bin:/opt/credential-helpers:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HEALTHCHECK_CONFIG=/etc/pullsecret-controller/config.yaml

USER ${APP_UID}:${APP_UID}
EXPOSE 9102

# Asks /healthz where the config's server.listen says the controller listens (default
# 127.0.0.1:9102; 0.0.0.0 and [::] are asked on loopback). Slim images have no curl: the standard
# library's urlopen raises on a refused connection or an HTTP error status, so the check fails.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request, yaml; server = (yaml.safe_load(open(os.environ['HEALTHCHECK_CONFIG'])) or {}).get('server') or {}; host, _, port = server.get('listen', '127.0.0.1:9102').rpartition(':'); host = {'0.0.0.0': '127.0.0.1', '[::]': '[::1]'}.get(host, host); urllib.request.urlopen(f'http://{host}:{port}/healthz', timeout=4)"]

# Exec form: the controller is PID 1 and receives SIGTERM itself (it drains and exits).
ENTRYPOINT ["pullsecret-controller"]
CMD ["run", "--config", "/etc/pullsecret-controller/config.yaml"]
