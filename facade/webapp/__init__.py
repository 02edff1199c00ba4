"""The web process: serves the built web app (web/dist) on WEB_PORT (4100), beside the facade."""
