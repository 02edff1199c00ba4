"""python -m services.users: the users service; `python -m services.users admin create ...`
makes an admin (services/users/cli.py)."""

import sys

from services.runtime.server import run_service
from services.users.server import build

if __name__ == "__main__":
    if len(sys.argv) > 1:
        from services.users.cli import main

        sys.exit(main(sys.argv[1:]))
    run_service("users", build)
