"""python -m services.terminal"""

from services.runtime.server import run_service
from services.terminal.server import build

if __name__ == "__main__":
    run_service("terminal", build)
