"""Generate ``src/cortex_proto`` from ``proto/``; ``--check`` fails if it is stale.

Two generators, one package (see docs/adr/0002-betterproto-and-the-wire-codec.md):

* betterproto2 writes the typed messages and grpcio client stubs for every ``.proto``
  into ``cortex_proto/cortex/v1``;
* protoc's own Python generator writes ``bus_pb2`` and ``safety_pb2`` (upb runtime, messages
  only, no ``_pb2_grpc``) into ``cortex_proto/_wire/cortex/v1``: the bus codec and the Safety
  Kernel's ``Check`` are on the hot path, and importing ``safety_pb2`` registers its file
  descriptor in protobuf's default pool, which is what gRPC server reflection serves.

Run through nox: ``nox -s proto`` (regenerate) or ``nox -s proto -- --check``.
"""

from __future__ import annotations

import argparse
import filecmp
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"
TARGET = ROOT / "src" / "cortex_proto"
# The protos that also get upb classes. Each imports nothing of ours, so the absolute imports
# protoc writes into *_pb2.py stay valid inside the package.
WIRE_PROTOS = ["cortex/v1/bus.proto", "cortex/v1/safety.proto", "cortex/v1/api.proto"]

PACKAGE_DOC = '''"""Generated protobuf code for Cortex. Never edit by hand: run ``nox -s proto``.

* ``cortex_proto.cortex.v1``: betterproto2 messages and grpcio stubs (all of ``proto/``).
* ``cortex_proto._wire.cortex.v1.bus_pb2``: protoc/upb classes behind the bus codec.
* ``cortex_proto._wire.cortex.v1.safety_pb2``: protoc/upb classes on the Safety Kernel's wire;
  importing it registers ``cortex/v1/safety.proto`` for gRPC server reflection.
* ``cortex_proto._wire.cortex.v1.api_pb2``: the same for ``cortex/v1/api.proto`` (``CortexApi``).
"""
'''


def _protoc(*args: str) -> None:
    cmd = [sys.executable, "-m", "grpc_tools.protoc", f"-I{PROTO_DIR}", *args]
    subprocess.run(cmd, check=True)


def generate(out: Path) -> None:
    protos = sorted(str(p.relative_to(PROTO_DIR)) for p in PROTO_DIR.rglob("*.proto"))
    out.mkdir(parents=True, exist_ok=True)
    # betterproto2's plugin is found on PATH next to the interpreter.
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{PROTO_DIR}",
            f"--python_betterproto2_out={out}",
            *protos,
        ],
        check=True,
        env=env,
    )
    wire = out / "_wire"
    wire.mkdir()
    _protoc(f"--python_out={wire}", f"--pyi_out={wire}", *WIRE_PROTOS)
    for d in [wire, *[p for p in wire.rglob("*") if p.is_dir()]]:
        (d / "__init__.py").touch()
    (out / "__init__.py").write_text(PACKAGE_DOC)
    (out / "py.typed").touch()
    for cache in out.rglob("__pycache__"):
        shutil.rmtree(cache)


def _diff(a: Path, b: Path) -> list[str]:
    cmp = filecmp.dircmp(a, b, ignore=["__pycache__"])
    problems = [f"only in generated: {a.name}/{n}" for n in cmp.left_only]
    problems += [f"only in checked-in: {b.name}/{n}" for n in cmp.right_only]
    problems += [f"differs: {b / n}" for n in cmp.diff_files]
    for sub in cmp.common_dirs:
        problems += _diff(a / sub, b / sub)
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if src/cortex_proto is stale")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp) / "cortex_proto"
        generate(fresh)
        if args.check:
            problems = _diff(fresh, TARGET) if TARGET.exists() else ["src/cortex_proto is missing"]
            if problems:
                print("generated code is stale; run `nox -s proto`:", *problems, sep="\n  ")
                return 1
            print("generated code is up to date")
            return 0
        if TARGET.exists():
            shutil.rmtree(TARGET)
        shutil.copytree(fresh, TARGET)
        print(f"regenerated {TARGET.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
