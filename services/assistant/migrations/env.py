"""Alembic environment of the assistant service."""

from services.assistant.orm import metadata
from services.runtime.migrations import run_env

run_env(metadata)
