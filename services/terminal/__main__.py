"""python -m services.terminal"""

from services.terminal.server import build
from services.runtime.server import run_service

if __name__ == "__main__":
    run_service("terminal", build)
