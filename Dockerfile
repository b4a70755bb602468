# Callin gateway service image.
# Build stage: the wheel, with the native fast path (gateway/media/_fastpath.c) compiled; the compiler stays here.
FROM python:3.11-slim AS build
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY callin_sdk ./callin_sdk
COPY gateway ./gateway
COPY signaling ./signaling
COPY web ./web
RUN pip wheel --no-deps -w /wheels . \
    && python -c "import zipfile,glob,sys; sys.exit(0 if any('_fastpath' in n for n in zipfile.ZipFile(glob.glob('/wheels/*.whl')[0]).namelist()) else 'native fast path not built')"

FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    CALLIN_HOST=0.0.0.0 CALLIN_PORT=8080 CALLIN_DATA_DIR=/app/data

WORKDIR /app
# the console and the widget (web/) are installed with the package (callin_web); no CALLIN_WEB_ROOT needed
COPY --from=build /wheels /wheels
RUN pip install /wheels/*.whl && rm -rf /wheels && useradd --system --uid 10001 --home-dir /app callin \
    && mkdir -p /app/data && chown callin /app/data
# call records, accounts, keys (embedded SQLite); use CALLIN_DATABASE_URL for PostgreSQL
VOLUME /app/data

USER callin
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD python -c "import os,urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('CALLIN_PORT','8080'), timeout=2).status == 200 else 1)"
CMD ["callin", "serve"]
