"""The platform database, as a Dagster resource."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
import psycopg
from pydantic import Field

from seed_growth.resources.redaction import redact


class DatabaseUnavailable(RuntimeError):
    """The database cannot be reached; the message names it without its password."""


def redact_url(url: str) -> str:
    """The connection string (a URL or libpq key=value) with any password replaced, safe for logs and
    metadata."""
    return redact(url)


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type when empty), with secrets redacted."""
    text = str(exc).strip()
    return redact(text.splitlines()[0]) if text else type(exc).__name__


class PostgresResource(dg.ConfigurableResource):
    """Connections to the platform's PostgreSQL (``DATABASE_URL``, a libpq URL or key=value string)."""

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
        except psycopg.Error as exc:  # unreachable, refused, or a connection string libpq cannot parse
            raise DatabaseUnavailable(
                f"cannot connect to the database at {self.display_url}: {first_line(exc)}"
            ) from None
        with conn:
            yield conn
