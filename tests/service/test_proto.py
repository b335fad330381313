"""The checked-in generated code matches the .proto (`make proto` regenerates it)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONTRACT = "paramstore/proto/v1/paramstore.proto"
GENERATED = ["paramstore_pb2.py", "paramstore_pb2.pyi", "paramstore_pb2_grpc.py"]


def test_generated_code_is_up_to_date_with_the_proto(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", f"-I{ROOT / 'proto'}",
         f"--python_out={tmp_path}", f"--pyi_out={tmp_path}", f"--grpc_python_out={tmp_path}",
         str(ROOT / "proto" / CONTRACT)],
        check=True, capture_output=True,
    )
    for name in GENERATED:
        fresh = (tmp_path / "paramstore/proto/v1" / name).read_text()
        checked_in = (ROOT / "proto/paramstore/proto/v1" / name).read_text()
        assert checked_in == fresh, f"{name} is stale: run `make proto`"


def test_generated_code_imports_under_the_paramstore_package():
    from paramstore.proto.v1 import paramstore_pb2, paramstore_pb2_grpc

    assert paramstore_pb2.DESCRIPTOR.package == "paramstore.v1"
    assert hasattr(paramstore_pb2_grpc, "ParamStoreStub")
