# The Ansim image: one image for every process type, chosen by the command.
#   docker run IMAGE db upgrade            (once per deploy, a job)
#   docker run IMAGE serve --host 0.0.0.0  (the API; any number of replicas)
#   docker run IMAGE dispatcher            (stream workers; any number)
# PostgreSQL (with PostGIS) and Redis run elsewhere: set DATABASE_URL and REDIS_URL.
#
# The base is a build argument, so a machine without a registry can build from a Debian it made
# itself (scripts/image-smoke.sh: debootstrap + docker import). Any Debian bookworm will do: the
# image installs Debian's python3 (3.11) and, in a build stage only, Debian's npm.
ARG BASE_IMAGE=debian:bookworm-slim

# --- Leaflet (console pages) and Swagger UI (/docs) from npm, pinned by package-lock.json ----
FROM ${BASE_IMAGE} AS web
ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update -q \
 && apt-get install -y -q --no-install-recommends npm ca-certificates \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /web
COPY app/web/package.json app/web/package-lock.json ./
# Node reads the system's CA bundle too (a network that inspects TLS has its CA there).
# Of Swagger UI only what /docs loads (the bundle, its CSS, icons; no source maps) and its licence.
RUN NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt npm ci --no-audit --no-fund \
 && mkdir -p dist/swagger-ui-dist && cd node_modules/swagger-ui-dist \
 && cp LICENSE NOTICE package.json swagger-ui-bundle.js swagger-ui.css favicon-*.png \
       oauth2-redirect.html oauth2-redirect.js /web/dist/swagger-ui-dist/ \
 && cp -r /web/node_modules/leaflet/dist /web/dist/leaflet

# --- Python packages, pinned by constraints.txt, in a virtualenv at /opt/ansim -------------
FROM ${BASE_IMAGE} AS python
ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update -q \
 && apt-get install -y -q --no-install-recommends python3 python3-venv ca-certificates \
 && rm -rf /var/lib/apt/lists/*
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt PYTHONDONTWRITEBYTECODE=1
WORKDIR /srv/ansim
RUN python3 -m venv /opt/ansim
# The dependencies first (a layer that changes only with pyproject.toml or constraints.txt;
# the README that pyproject.toml names is a stand-in here, so editing it rebuilds nothing).
COPY pyproject.toml constraints.txt ./
RUN mkdir app && touch app/__init__.py README.md \
 && /opt/ansim/bin/pip install -q -c constraints.txt . \
 && /opt/ansim/bin/pip uninstall -q -y ansim && rm -rf app build *.egg-info
# Then the project itself, installed in place: `ansim db upgrade` reads alembic.ini and
# migrations/ beside app/, and the pages read app/web/node_modules.
COPY README.md alembic.ini ./
COPY migrations ./migrations
COPY app ./app
# pip has done its work: out. The bytecode is compiled here, as the image's user cannot write it
# and each process would otherwise compile every module it imports (~1.3 s of CPU at start).
RUN /opt/ansim/bin/pip install -q --no-deps -c constraints.txt -e . \
 && /opt/ansim/bin/pip uninstall -q -y pip setuptools \
 && rm -f /opt/ansim/bin/pip* /opt/ansim/bin/Activate.ps1 /opt/ansim/bin/activate* \
 && find /opt/ansim /srv/ansim -name __pycache__ -prune -exec rm -rf {} + \
 && /opt/ansim/bin/python -m compileall -q -j 0 --invalidation-mode unchecked-hash \
      /opt/ansim/lib /srv/ansim/app /srv/ansim/migrations

# --- The image: Debian's python3 and what the stages made, nothing to build with -------------
FROM ${BASE_IMAGE}
ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update -q \
 && apt-get install -y -q --no-install-recommends python3 ca-certificates tzdata \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/log/apt /var/log/dpkg.log \
 && useradd --system --uid 10001 --home-dir /srv/ansim --no-create-home ansim
ENV PATH=/opt/ansim/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /srv/ansim
COPY --from=python /opt/ansim /opt/ansim
COPY --from=python /srv/ansim /srv/ansim
COPY --from=web /web/dist/leaflet ./app/web/node_modules/leaflet/dist
COPY --from=web /web/dist/swagger-ui-dist ./app/web/node_modules/swagger-ui-dist
USER ansim
EXPOSE 8000
# No HEALTHCHECK here: the same image runs dispatchers, which serve no HTTP. The API's probe is
# GET /healthz (alive) and /readyz (PostgreSQL and Redis answer); compose.yaml uses them.
ENTRYPOINT ["ansim"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
