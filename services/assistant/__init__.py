"""The assistant service."""
