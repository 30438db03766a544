#!/bin/sh
# Creates the databases named in POSTGRES_MULTIPLE_DATABASES (comma-separated) on the first start
# of the PostgreSQL container (docker-compose.yaml): one per component.
set -eu
for database in $(echo "${POSTGRES_MULTIPLE_DATABASES:-}" | tr ',' ' '); do
    psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" -c "CREATE DATABASE \"$database\""
done
