# One image for every Longview process of docker-compose.yaml (Airflow, MLflow, the Feast UI, the
# BentoML service): the project installed from its lock file, CPU torch first (as the Makefile).
FROM python:3.11-slim
ENV PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1
WORKDIR /app
RUN apt-get update && apt-get install -y --no-install-recommends git libgomp1 && rm -rf /var/lib/apt/lists/*
COPY requirements.lock pyproject.toml ./
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu \
    && pip install -r requirements.lock boto3
COPY . .
RUN pip install --no-deps -e .
EXPOSE 3000 5000 8080 8888
CMD ["longview", "--help"]
