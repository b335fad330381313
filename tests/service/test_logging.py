"""`--log-level`: a line per call at DEBUG; at INFO a busy server's log stays readable (no line
per call), on the server and in the CLI."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from server_process import running_server

from paramstore.client.errors import StoreNotFound

BURST = 200


def call_burst(server) -> None:
    """BURST calls from 8 threads, one of them a failure."""
    with server.connect() as client:
        client.create_store("busy")
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda _: client.list_stores(), range(BURST)))
        with pytest.raises(StoreNotFound):
            client.store("ghost").info()


def call_lines(log: list[str]) -> list[str]:
    return [line for line in log if " method=" in line]


def test_at_info_a_burst_of_calls_logs_no_line_per_call(tmp_path):
    with running_server(tmp_path / "data") as server:
        call_burst(server)
        assert server.terminate() == 0
    assert call_lines(server.log) == []
    assert any("paramstore serving on" in line for line in server.log)


def test_at_debug_each_call_logs_a_line(tmp_path):
    with running_server(tmp_path / "data", "--log-level", "debug") as server:
        call_burst(server)
        assert server.terminate() == 0
    lines = call_lines(server.log)
    assert sum("method=ListStores status=OK" in line for line in lines) == BURST
    assert any("store=ghost method=GetStore status=NOT_FOUND" in line for line in lines)


def test_the_cli_logs_its_calls_at_debug_only(tmp_path):
    with running_server(tmp_path / "data") as server:
        quiet = server.cli("stores")
        verbose = server.cli("--log-level", "DEBUG", "stores")
    assert quiet.returncode == verbose.returncode == 0
    assert "method=" not in quiet.stderr
    assert "paramstore.client method=ListStores status=OK" in verbose.stderr


def test_an_unknown_log_level_is_refused(tmp_path):
    with running_server(tmp_path / "data") as server:
        refused = server.cli("--log-level", "LOUD", "stores")
    assert refused.returncode == 2 and "invalid choice: 'LOUD'" in refused.stderr
