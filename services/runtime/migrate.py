"""`python -m services.runtime.migrate [service ...]`: bring each service's database up to date."""

from __future__ import annotations

import sys

from services.runtime.config import DOMAIN_SERVICES, ConfigError, load_runtime_config
from services.runtime.migrations import migrations_dir, upgrade


def main(argv: list[str]) -> None:
    services = argv or [s for s in DOMAIN_SERVICES if migrations_dir(s).is_dir()]
    for service in services:
        if not migrations_dir(service).is_dir():
            sys.exit(f"{service} has no migrations")
        try:
            # Migrations check no token: they need no key, even in production.
            config = load_runtime_config(service, tokens=False)
        except ConfigError as error:
            sys.exit(f"{service}: configuration error: {error}")
        upgrade(service, config.database_url)
        print(f"{service}: migrated")


if __name__ == "__main__":
    main(sys.argv[1:])
