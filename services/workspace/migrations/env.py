"""Alembic environment of the workspace service."""

from services.runtime.migrations import run_env
from services.workspace.orm import metadata

run_env(metadata)
