# The image every Sessionizer service runs (API, workers, Flower, the demo loader): docker-compose.yml.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# The package index pip uses, when not PyPI's: --build-arg PIP_INDEX_URL=... (PIP_EXTRA_INDEX_URL).
# Build arguments stay readable in the image's history: an index that needs credentials is given
# through a build secret, never here.
ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL

# The runtime dependencies first, in a layer of their own: it is rebuilt only when their lock
# changes. requirements-runtime.lock pins the [project] dependencies alone, at requirements.lock's
# versions (`make lock` makes both); the test extra (pytest, playwright, scikit-learn, ...) has no
# place here.
COPY requirements-runtime.lock ./
RUN pip install --no-deps -r requirements-runtime.lock \
    && pip check

# Then the project (only what .dockerignore lets through: no tests, no var/, no secrets).
# Editable, so that the code finds config/ beside it in /app.
COPY . .
RUN pip install --no-deps -e . \
    && useradd --create-home --uid 10001 app \
    && mkdir -p /app/var \
    && chown app /app/var

# Not root: a compromised process cannot rewrite the code it runs.
USER app

# 8000: the API (gunicorn); 9808: a worker's metrics; 5555: Flower.
EXPOSE 8000 9808 5555
CMD ["gunicorn", "--bind", "0.0.0.0:8000", "webapp.wsgi:app"]
