"""Alembic on each backend: the schema goes down to the first revision and back up."""

from sqlalchemy import inspect

from alembic import command
from service.db import alembic_config, make_engine, upgrade_schema

NEW_TABLES = {"workers", "claims", "checkpoints"}


def _tables(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_migrations_go_down_and_up_again(database_url):
    assert _tables(database_url) >= NEW_TABLES
    command.downgrade(alembic_config(database_url), "0001")
    assert not NEW_TABLES & _tables(database_url)
    upgrade_schema(database_url)
    assert _tables(database_url) >= NEW_TABLES
