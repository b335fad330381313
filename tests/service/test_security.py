"""TLS, mutual TLS and tokens (full and read-only): who gets in and what they may do."""

from __future__ import annotations

import re
import subprocess
import sys
import threading

import numpy as np
import pytest

pytest.importorskip("cryptography")

from certificates import Authority  # noqa: E402

from paramstore.client import connect  # noqa: E402
from paramstore.client.errors import (  # noqa: E402
    PermissionDenied,
    Unauthenticated,
    Unavailable,
)
from paramstore.server.auth import Token, parse_tokens  # noqa: E402

WRITER, READER = "writer-token-0123", "reader-token-4567"


@pytest.fixture(scope="module")
def authority() -> Authority:
    return Authority("paramstore test CA")


@pytest.fixture(scope="module")
def server_cert(authority):
    return authority.issue_server()


@pytest.fixture
def tls_server(make_server, server_cert):
    return make_server(tls=server_cert.pair)


@pytest.fixture
def mtls_server(make_server, authority, server_cert):
    return make_server(tls=server_cert.pair, tls_client_ca=authority.cert)


# ---- TLS -----------------------------------------------------------------------------------------


def test_a_client_trusting_the_servers_ca_works(tls_server, authority):
    with connect(tls_server.address, tls=authority.cert, timeout=10) as client:
        client.create_store("secure")
        assert client.list_stores() == ["secure"]


def test_a_plaintext_client_is_refused_by_a_tls_server(tls_server):
    with connect(tls_server.address, timeout=10) as client, pytest.raises(Unavailable):
        client.list_stores()


def test_a_client_trusting_another_ca_is_refused(tls_server):
    stranger = Authority("another CA")
    with connect(tls_server.address, tls=stranger.cert, timeout=10) as client, \
            pytest.raises(Unavailable):
        client.list_stores()


def test_mutual_tls_accepts_a_client_certificate_from_its_ca(mtls_server, authority):
    worker = authority.issue_client()
    with connect(mtls_server.address, tls=authority.cert, client_cert=worker.pair,
                 timeout=10) as client:
        client.create_store("mutual")
        assert client.list_stores() == ["mutual"]


def test_mutual_tls_refuses_a_client_without_a_certificate(mtls_server, authority):
    with connect(mtls_server.address, tls=authority.cert, timeout=10) as client, \
            pytest.raises(Unavailable):
        client.list_stores()


def test_mutual_tls_refuses_a_client_certificate_from_another_ca(mtls_server, authority):
    impostor = Authority("another CA").issue_client()
    with connect(mtls_server.address, tls=authority.cert, client_cert=impostor.pair,
                 timeout=10) as client, pytest.raises(Unavailable):
        client.list_stores()


# ---- tokens --------------------------------------------------------------------------------------


def test_a_token_file_lists_tokens_each_optionally_read_only():
    text = "# the team's tokens\n\nwriter-token\n  reader-token   read-only  \n"
    assert parse_tokens(text) == [Token("writer-token"), Token("reader-token", read_only=True)]


@pytest.mark.parametrize("text", ["", "# only a comment\n", "token read-write\n", "a b c\n"])
def test_a_malformed_token_file_is_refused(text):
    with pytest.raises(ValueError, match="token"):
        parse_tokens(text)


@pytest.fixture
def guarded(make_server, tmp_path):
    """A server with a writer and a reader token, holding store "net" with one snapshot."""
    server = make_server(token=[Token(WRITER), Token(READER, read_only=True)])
    with connect(server.address, token=WRITER) as writer:
        store = writer.create_store("net")
        store.push({"w": np.arange(4, dtype=np.float32)})
        store.snapshot(step=1)
    return server


def test_every_listed_token_is_accepted(guarded):
    for token in (WRITER, READER):
        with connect(guarded.address, token=token) as client:
            assert client.list_stores() == ["net"]


def test_an_unlisted_token_is_refused_as_unauthenticated(guarded):
    with connect(guarded.address, token="not-a-token") as client, \
            pytest.raises(Unauthenticated):
        client.list_stores()


def test_a_read_only_token_pulls_collects_lists_and_exports(guarded, tmp_path):
    with connect(guarded.address, token=READER) as client:
        store = client.store("net")
        local = {"w": np.zeros(4, np.float32)}
        store.pull(local)
        np.testing.assert_array_equal(local["w"], np.arange(4))
        assert list(store.collect_params()) == ["w"]
        (snapshot,) = store.snapshots()
        store.export_snapshot(snapshot.id, tmp_path / "net.safetensors")
        assert (tmp_path / "net.safetensors").stat().st_size > 0


@pytest.mark.parametrize("write", [
    lambda client: client.store("net").push({"w": np.ones(4, np.float32)}),
    lambda client: client.store("net").set_data("w", np.ones(4, np.float32)),
    lambda client: client.store("net").initialize(force_reinit=True),
    lambda client: client.store("net").snapshot(),
    lambda client: client.create_store("other"),
    lambda client: client.delete_store("net"),
], ids=["push", "set_data", "initialize", "snapshot", "create_store", "delete_store"])
def test_a_read_only_token_cannot_write_and_changes_nothing(guarded, write):
    with connect(guarded.address, token=READER) as client:
        with pytest.raises(PermissionDenied, match="read-only"):
            write(client)
    with connect(guarded.address, token=WRITER) as writer:
        assert writer.list_stores() == ["net"]
        store = writer.store("net")
        local = {"w": np.zeros(4, np.float32)}
        store.pull(local)
        np.testing.assert_array_equal(local["w"], np.arange(4))
        assert len(store.snapshots()) == 1


@pytest.fixture
def serve_process(tmp_path):
    """Run `python -m paramstore.server` with extra flags; yields a function giving its address
    (the TLS server cannot be probed in plain text, so its log line tells when it listens)."""
    processes = []

    def start(*flags: str) -> str:
        process = subprocess.Popen(
            [sys.executable, "-m", "paramstore.server", "--address", "127.0.0.1:0",
             "--data-dir", str(tmp_path / "data"), *flags], stderr=subprocess.PIPE, text=True)
        processes.append(process)
        for line in process.stderr:
            found = re.search(r"serving on ([\d.]+:\d+)", line)
            if found:
                threading.Thread(target=process.stderr.read, daemon=True).start()
                return found.group(1)
        raise RuntimeError("the server did not start")

    yield start
    for process in processes:
        process.kill()
        process.wait()


def test_serve_flags_enable_mutual_tls_and_read_only_tokens(serve_process, authority,
                                                             server_cert, tmp_path):
    files = {"cert.pem": server_cert.cert, "key.pem": server_cert.key, "ca.pem": authority.cert,
             "tokens.txt": f"{WRITER}\n{READER} read-only\n".encode()}
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
    address = serve_process("--tls-cert", str(tmp_path / "cert.pem"),
                            "--tls-key", str(tmp_path / "key.pem"),
                            "--tls-client-ca", str(tmp_path / "ca.pem"),
                            "--token-file", str(tmp_path / "tokens.txt"))
    worker = authority.issue_client()
    with connect(address, token=WRITER, tls=authority.cert, client_cert=worker.pair,
                 timeout=10) as writer:
        writer.create_store("net")
    with connect(address, token=READER, tls=authority.cert, client_cert=worker.pair,
                 timeout=10) as reader:
        assert reader.list_stores() == ["net"]
        with pytest.raises(PermissionDenied):
            reader.create_store("other")
    with connect(address, token=WRITER, tls=authority.cert, timeout=10) as stranger, \
            pytest.raises(Unavailable):
        stranger.list_stores()
