"""Generate gen/ from protos/ (python, grpc, mypy stubs), or check that gen/ is current."""

from __future__ import annotations

import argparse
import filecmp
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import google.api  # googleapis-common-protos ships the .proto files beside its modules
import grpc_tools
from google.protobuf import descriptor_pb2
from grpc_tools import protoc
from protovalidate._gen.buf.validate import validate_pb

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
GEN = ROOT / "gen"
# Generated packages that gen/ holds: ours, and buf.validate (the rules our protos import).
PACKAGES = ("stockfolio", "buf")
VALIDATE_PROTO = "buf/validate/validate.proto"


def include_paths() -> list[str]:
    googleapis_root = Path(google.api.__path__[0]).parent.parent
    well_known = Path(grpc_tools.__path__[0]) / "_proto"
    return [str(PROTOS), str(googleapis_root), str(well_known)]


def validate_descriptor(folder: Path) -> str:
    """buf/validate/validate.proto as a descriptor set, from the protovalidate wheel.

    The wheel ships the file's descriptor, not its .proto text; protoc reads the descriptor
    set as if it had parsed the file, so the rules come from the very version that checks them.
    """
    found = descriptor_pb2.FileDescriptorProto.FromString(validate_pb.desc().proto.to_binary())
    assert found.name == VALIDATE_PROTO, found.name
    path = folder / "validate.binpb"
    path.write_bytes(descriptor_pb2.FileDescriptorSet(file=[found]).SerializeToString())
    return f"--descriptor_set_in={path}"


def protoc_args(folder: Path) -> list[str]:
    """protoc and its inputs: our protos, google/api, the well-known types, buf.validate."""
    return [
        "grpc_tools.protoc",
        validate_descriptor(folder),
        *(f"-I{p}" for p in include_paths()),
    ]


def generate(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    sources = sorted(str(p.relative_to(PROTOS)) for p in PROTOS.rglob("*.proto"))
    sources.append(VALIDATE_PROTO)
    with tempfile.TemporaryDirectory() as tmp:
        _run_protoc(out, sources, protoc_args(Path(tmp)))
    # Regular packages (not namespace ones) so mypy and setuptools find them the same way.
    for package in PACKAGES:
        for folder in [out / package, *(p for p in (out / package).rglob("*") if p.is_dir())]:
            (folder / "__init__.py").touch()


def _run_protoc(out: Path, sources: list[str], args: list[str]) -> None:
    args = [*args, f"--python_out={out}", f"--grpc_python_out={out}"]
    args += [f"--mypy_out={out}", f"--mypy_grpc_out={out}", *sources]
    # The mypy plugins live beside this interpreter (the virtualenv's bin/).
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    if protoc.main(args) != 0:
        sys.exit("protoc failed")


def build_image(out: Path, *, source_info: bool) -> None:
    """Every proto of ours with its imports (google/api, buf/validate) as one descriptor set."""
    sources = sorted(str(p.relative_to(PROTOS)) for p in PROTOS.rglob("*.proto"))
    with tempfile.TemporaryDirectory() as tmp:
        args = [*protoc_args(Path(tmp)), "--include_imports", f"--descriptor_set_out={out}"]
        if source_info:
            args.append("--include_source_info")
        if protoc.main([*args, *sources]) != 0:
            sys.exit("protoc failed")


def lint() -> None:
    """Run buf lint (STANDARD) on an image built with the same include paths as the code.

    buf cannot take include paths itself, and we use google/api from the installed wheel rather
    than copying it, so protoc builds an image with source info and buf lints our files in it.
    """
    buf = Path(sys.executable).parent / "buf"
    with tempfile.TemporaryDirectory() as tmp:
        image = Path(tmp) / "image.binpb"
        build_image(image, source_info=True)
        config = (ROOT / "buf.yaml").read_text()
        result = subprocess.run(
            [str(buf), "lint", f"{image}#format=binpb", "--path", "stockfolio", "--config", config],
            check=False,
        )
    if result.returncode != 0:
        sys.exit("buf lint failed")
    print("buf lint: clean")


def differences(a: Path, b: Path) -> list[str]:
    found: list[str] = []
    cmp = filecmp.dircmp(a, b, ignore=["__pycache__"])
    found += [f"only in {a}: {n}" for n in cmp.left_only]
    found += [f"only in {b}: {n}" for n in cmp.right_only]
    found += [f"differs: {a / n}" for n in cmp.diff_files]
    for sub in cmp.common_dirs:
        found += differences(a / sub, b / sub)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail when gen/ is stale")
    parser.add_argument("--lint", action="store_true", help="run buf lint on protos/")
    parser.add_argument(
        "--descriptor-set",
        metavar="FILE",
        type=Path,
        help="write every proto with its imports as one descriptor set (for protoc plugins of "
        "other languages: protoc --descriptor_set_in=FILE ...)",
    )
    options = parser.parse_args()
    if options.lint:
        lint()
        return
    if options.descriptor_set is not None:
        build_image(options.descriptor_set.resolve(), source_info=True)
        print(f"wrote {options.descriptor_set}")
        return
    if not options.check:
        # Generated aside, then swapped in: a proto that does not compile leaves gen/ as it was.
        with tempfile.TemporaryDirectory(dir=GEN) as tmp:
            generate(Path(tmp))
            for package in PACKAGES:
                shutil.rmtree(GEN / package, ignore_errors=True)
                (Path(tmp) / package).rename(GEN / package)
        return
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp))
        stale = [
            line for package in PACKAGES for line in differences(GEN / package, Path(tmp) / package)
        ]
    if stale:
        print("gen/ is stale; run 'make gen' and commit the result:", *stale, sep="\n  ")
        sys.exit(1)
    print("gen/ is current")


if __name__ == "__main__":
    main()
