# The scorer, trainer and producer image (one image, three console scripts). Used by docker-compose.yml.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
RUN useradd --create-home --uid 10001 scorer
WORKDIR /app

COPY pyproject.toml README.md ./
COPY consumer ./consumer
COPY producer ./producer
COPY admin_api ./admin_api
COPY schemas ./schemas
COPY training ./training
COPY stack ./stack
COPY config ./config
COPY data ./data
RUN pip install . && mkdir -p /app/models && chown -R scorer /app/models

USER scorer
EXPOSE 5001
CMD ["housing-scorer"]
