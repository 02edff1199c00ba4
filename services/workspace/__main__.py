"""python -m services.workspace"""

from services.workspace.server import build
from services.runtime.server import run_service

if __name__ == "__main__":
    run_service("workspace", build)
