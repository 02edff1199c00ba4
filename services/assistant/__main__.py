"""python -m services.assistant"""

from services.assistant.server import build
from services.runtime.server import run_service

if __name__ == "__main__":
    run_service("assistant", build)
