# One image for every Beluga process: workers, Flower and the Flask example (see docker-compose.yml).
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    BELUGA_IMPORTS=beluga.demo

WORKDIR /app
COPY . .
RUN pip install -e '.[flower]' flask \
    && useradd --create-home --uid 1000 beluga
# Celery refuses to be comfortable as root; nothing here needs it.
USER beluga

CMD ["celery", "-A", "beluga", "worker", "--loglevel", "info"]
