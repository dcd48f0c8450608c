# The API image. PostgreSQL (with PostGIS) and Redis run elsewhere: set DATABASE_URL, REDIS_URL.
# Leaflet (console pages) and Swagger UI (/docs) come from npm in a build stage; only the files
# served are kept.
FROM node:20-bookworm-slim AS web
WORKDIR /web
COPY app/web/package.json app/web/package-lock.json ./
RUN npm ci --no-audit --no-fund

FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /srv/ansim

COPY pyproject.toml constraints.txt README.md alembic.ini ./
COPY app ./app
COPY --from=web /web/node_modules/leaflet/dist ./app/web/node_modules/leaflet/dist
COPY --from=web /web/node_modules/swagger-ui-dist ./app/web/node_modules/swagger-ui-dist
COPY migrations ./migrations
RUN pip install -c constraints.txt . && useradd --system --uid 10001 ansim
USER ansim

EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz').status != 200)"
# Run `ansim db upgrade` once per deploy (a job), not in every replica's start-up.
CMD ["ansim", "serve", "--host", "0.0.0.0", "--port", "8000"]
