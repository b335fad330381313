"""bfloat16 end to end: engine arrays, push and pull, snapshots, and files written by torch."""

from __future__ import annotations

import numpy as np
import safetensors.numpy
from storage_files import snapshot_path

from paramstore import nd
from paramstore.client.errors import InvalidArgument


def bf16(*values: float) -> np.ndarray:
    return np.array(values, np.float32).astype("bfloat16")


def test_an_engine_array_holds_bfloat16():
    array = nd.array([1.0, 2.5], dtype="bfloat16")
    assert array.dtype.__name__ == "bfloat16"
    assert (array * 2).asnumpy().tolist() == [2.0, 5.0]


def test_bfloat16_parameters_push_and_pull_unchanged(client):
    store = client.create_store("bf")
    store.push({"w": bf16(1.0, -0.5, 3.0e38)})
    pulled = store.collect_params()["w"].data().asnumpy()
    assert pulled.dtype.name == "bfloat16"
    np.testing.assert_array_equal(pulled, bf16(1.0, -0.5, 3.0e38))


def test_a_bfloat16_snapshot_is_a_bf16_safetensors_file(client, server):
    store = client.create_store("bf")
    store.push({"w": bf16(1.0, 2.0)})
    info = store.snapshot()
    path = snapshot_path(server.data_dir, "bf", info.id)
    loaded = safetensors.numpy.load_file(path)
    assert loaded["w"].dtype.name == "bfloat16"
    assert b'"dtype":"BF16"' in path.read_bytes()[:4096]


def test_a_bfloat16_file_written_by_torch_imports(client, tmp_path):
    # torch's safetensors writes this very layout: BF16 tensors and {"format": "pt"}.
    path = tmp_path / "torch.safetensors"
    safetensors.numpy.save_file({"layer.weight": bf16(0.25, 8.0)}, path,
                                metadata={"format": "pt"})
    client.import_snapshot(path, store="torch")
    pulled = client.store("torch").collect_params()["layer.weight"].data().asnumpy()
    np.testing.assert_array_equal(pulled, bf16(0.25, 8.0))


def test_a_float8_file_is_refused_naming_the_dtype(client, tmp_path):
    header = b'{"w":{"dtype":"F8_E4M3","shape":[2],"data_offsets":[0,2]}}'
    path = tmp_path / "fp8.safetensors"
    path.write_bytes(len(header).to_bytes(8, "little") + header + b"\x00\x00")
    try:
        client.import_snapshot(path, store="fp8")
    except InvalidArgument as error:
        assert "F8_E4M3" in str(error)
    else:
        raise AssertionError("a float8 file was imported")
    assert "fp8" not in client.list_stores()
