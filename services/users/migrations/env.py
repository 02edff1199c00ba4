"""Alembic environment of the users service."""

from services.runtime.migrations import run_env
from services.users.orm import metadata

run_env(metadata)
