"""Alembic environment of the portfolio service."""

from services.portfolio.orm import metadata
from services.runtime.migrations import run_env

run_env(metadata)
