"""Write the facade's OpenAPI document to a file, without a running system.

The web app's client is generated from it (`make web-client`); the document is the one the facade
serves at /api/v1/openapi.json, built from the same routes (the protos), indented for review.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from facade.openapi import build_openapi
from facade.routes import DOMAIN_APIS, build_routes


def document() -> str:
    spec = build_openapi(build_routes(DOMAIN_APIS))
    return json.dumps(spec, indent=2, sort_keys=False, ensure_ascii=False) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--write", type=Path, required=True, metavar="FILE")
    args = parser.parse_args()
    args.write.parent.mkdir(parents=True, exist_ok=True)
    args.write.write_text(document(), encoding="utf-8")


if __name__ == "__main__":
    main()
