"""python -m services.workspace"""

from services.runtime.server import run_service
from services.workspace.server import build

if __name__ == "__main__":
    run_service("workspace", build)
