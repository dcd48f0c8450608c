# The API image. PostgreSQL (with PostGIS) and Redis run elsewhere: set DATABASE_URL, REDIS_URL.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /srv/ansim

COPY pyproject.toml README.md alembic.ini ./
COPY app ./app
COPY migrations ./migrations
RUN pip install . && useradd --system --uid 10001 ansim
USER ansim

EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz').status != 200)"
# Run `ansim db upgrade` once per deploy (a job), not in every replica's start-up.
CMD ["ansim", "serve", "--host", "0.0.0.0", "--port", "8000"]
