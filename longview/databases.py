"""The PostgreSQL databases the production profile keeps its metadata in, made when missing.

Feast's SQL registry, MLflow's backend store and Airflow's metadata each live in a database of
their own on the server of ``postgres_url``. A first command on a new server creates the ones
missing where the configured user may (CREATEDB), and otherwise stops with one line naming what to
create and how, instead of the traceback each library would raise later."""

from __future__ import annotations

from dataclasses import dataclass

from longview.settings import Settings


class DatabaseUnavailable(ValueError):
    """A database the profile needs is missing and cannot be made here, or the server is down."""


@dataclass(frozen=True)
class Database:
    purpose: str
    url: str  # a SQLAlchemy URL, as the settings hold it


def required_databases(settings: Settings) -> list[Database]:
    """The profile's PostgreSQL databases (none for the embedded profile)."""
    if settings.profile != "production":
        return []
    wanted = [Database("Feast registry", settings.feast_registry_url)]
    if settings.tracking_uri.startswith("postgresql"):
        wanted.append(Database("MLflow backend", settings.tracking_uri))
    wanted.append(Database("Airflow metadata", settings.airflow_env()["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]))
    return wanted


def ensure_databases(databases: list[Database]) -> list[str]:
    """Create each missing database; returns the names created. Raises DatabaseUnavailable with
    one line naming the database and the command to create it when the user may not, or naming the
    server when it does not answer."""
    import psycopg
    from psycopg import sql
    from sqlalchemy.engine import make_url

    created = []
    for database in databases:
        url = make_url(database.url)
        name, where = url.database, f"{url.host or 'localhost'}:{url.port or 5432}"
        if not name:
            raise DatabaseUnavailable(f"the {database.purpose} URL names no database: {url.render_as_string()}")
        params = {"host": url.host or "localhost", "port": url.port or 5432, "user": url.username or "postgres",
                  "dbname": "postgres", "connect_timeout": 5}
        if url.password:
            params["password"] = url.password
        try:
            with psycopg.connect(**params, autocommit=True) as admin:
                if admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
                    continue
                admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        except psycopg.errors.InsufficientPrivilege:
            raise DatabaseUnavailable(
                f"the {database.purpose} database {name!r} does not exist on {where} and user {params['user']!r} "
                f"may not create it: run `createdb -h {params['host']} -p {params['port']} {name}` as a user who may "
                f"(or `longview init` as one)") from None
        except psycopg.errors.DuplicateDatabase:
            continue  # made meanwhile by another process
        except psycopg.OperationalError as exc:
            raise DatabaseUnavailable(f"PostgreSQL at {where} does not answer for the {database.purpose} database "
                                      f"{name!r}: {str(exc).strip().splitlines()[0]}") from None
        created.append(name)
    return created
