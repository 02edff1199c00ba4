"""python -m services.portfolio"""

from services.portfolio.server import build
from services.runtime.server import run_service

if __name__ == "__main__":
    run_service("portfolio", build)
