"""Test-only APIs: a .proto text compiled with protoc and added to the default descriptor pool,
so the facade builds routes from it as it does from the real protos."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import google.api
import grpc_tools
from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf.descriptor import FileDescriptor


def add_to_default_pool(name: str, text: str, folder: Path) -> FileDescriptor:
    """Compile `text` as `<folder>/<name>` and add it (with its imports) to the default pool."""
    (folder / name).write_text(text)
    out = folder / f"{name}.binpb"
    googleapis = Path(google.api.__path__[0]).parent.parent
    well_known = Path(grpc_tools.__path__[0]) / "_proto"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{folder}",
            f"-I{googleapis}",
            f"-I{well_known}",
            "--include_imports",
            f"--descriptor_set_out={out}",
            name,
        ],
        check=True,
    )
    pool = descriptor_pool.Default()
    for proto in descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file:
        try:
            pool.FindFileByName(proto.name)
        except KeyError:
            pool.Add(proto)
    return pool.FindFileByName(name)
