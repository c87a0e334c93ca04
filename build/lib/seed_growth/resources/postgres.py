"""The platform database, as a Dagster resource."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

import dagster as dg
import psycopg
from pydantic import Field


class DatabaseUnavailable(RuntimeError):
    """The database cannot be reached; the message names it without its password."""


def redact_url(url: str) -> str:
    """The URL with any password replaced, safe for logs and metadata."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


class PostgresResource(dg.ConfigurableResource):
    """Connections to the platform's PostgreSQL (``DATABASE_URL``, a libpq URL)."""

    database_url: str = Field(description="libpq URL of the platform database (DATABASE_URL)")
    connect_timeout_s: int = Field(default=10, description="seconds to wait for a connection")

    @property
    def display_url(self) -> str:
        return redact_url(self.database_url)

    @contextmanager
    def connect(self) -> Iterator[psycopg.Connection]:
        """An autocommit connection; wrap writes in ``conn.transaction()``."""
        try:
            conn = psycopg.connect(self.database_url, autocommit=True, connect_timeout=self.connect_timeout_s)
        except psycopg.OperationalError as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise DatabaseUnavailable(f"cannot connect to the database at {self.display_url}: {reason}") from None
        with conn:
            yield conn
