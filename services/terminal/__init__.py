"""The terminal service."""
