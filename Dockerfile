# The mailsift worker/CLI image (production: see docker-compose.yml).
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY schemas schemas
COPY streams streams
COPY agents agents
COPY sinks sinks
COPY checks checks
COPY mailsift mailsift
RUN pip install --no-cache-dir . && useradd --system --uid 10001 mailsift
USER mailsift
ENTRYPOINT ["mailsift"]
CMD ["worker"]
