"""Alembic environment: runs migrations over a synchronous psycopg 3 connection."""

from alembic import context
from sqlalchemy import create_engine, pool

from orders.config import get_settings
from servicekit.database import sqlalchemy_url

config = context.config
url = config.get_main_option("sqlalchemy.url") or get_settings().database_url
engine = create_engine(sqlalchemy_url(url), poolclass=pool.NullPool)

with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=None)
    with context.begin_transaction():
        context.run_migrations()
