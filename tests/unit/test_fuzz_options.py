"""tools/fuzz.py's command line: `--operation` narrows Schemathesis to the operations named (by
operationId), so one route's rules can be fuzzed in seconds instead of the whole API's minutes."""

from __future__ import annotations

from pathlib import Path

from tests.system_harness import Output, System
from tools.fuzz import parse_options, schemathesis_command

SYSTEM = System("http://127.0.0.1:4110", {}, {}, Output())


def test_operations_named_are_the_only_ones_fuzzed() -> None:
    options = parse_options(
        ["--operation", "PortfolioService_GetPerformance", "--operation", "PortfolioService_GetFx"]
    )
    command = schemathesis_command(SYSTEM, Path("c.toml"), Path("r"), options)
    included = [command[i + 1] for i, arg in enumerate(command) if arg == "--include-operation-id"]
    assert included == ["PortfolioService_GetPerformance", "PortfolioService_GetFx"]


def test_without_operations_every_one_is_fuzzed() -> None:
    command = schemathesis_command(SYSTEM, Path("c.toml"), Path("r"), parse_options([]))
    assert "--include-operation-id" not in command
