# The vantage6 server: migrate, seed and create root (bootstrap), then serve with daphne (vantage6.serve).
# Configured only through V6_ variables (see README); docker-compose.yml runs it with its services.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    V6_HOST=0.0.0.0 \
    V6_PORT=7601 \
    V6_DATA_DIR=/data

# psycopg2 is built from source: it needs a compiler and libpq's headers.
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev libpq-dev \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY . .

VOLUME /data
EXPOSE 7601
CMD ["sh", "-c", "python manage.py bootstrap && exec python -m vantage6.serve"]
