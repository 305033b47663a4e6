# The cascade gateway (`cascade serve`) without local models. Build: docker build -t cascade-gateway .
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    OMP_WAIT_POLICY=PASSIVE HF_HUB_OFFLINE=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY cascade ./cascade
COPY verifiers ./verifiers
COPY policies ./policies
RUN pip install ".[server,redis]" && useradd --create-home --uid 10001 cascade
USER cascade
EXPOSE 8000
# policies: mount a directory at /policies; keys: CASCADE_API_KEYS or a config file
# (CASCADE_GATEWAY_CONFIG, e.g. mounted at /config/gateway.yaml)
CMD ["sh", "-c", "exec cascade serve --policies /policies --host 0.0.0.0 --port 8000 ${CASCADE_GATEWAY_CONFIG:+--config $CASCADE_GATEWAY_CONFIG}"]
