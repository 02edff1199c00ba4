"""python -m services.users"""

from services.runtime.server import run_service
from services.users.server import build

if __name__ == "__main__":
    run_service("users", build)
