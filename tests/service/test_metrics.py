"""Prometheus metrics of a running server: calls by method and status, bytes in and out, store
sizes and snapshot durations, process and build facts, scraped from `/metrics` as Prometheus
would."""

import re
import urllib.request

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)
from prometheus_client.parser import text_string_to_metric_families
from replicas import eventually
from server_process import running_server
from test_data_channel import LENGTH, begin, gradient, header, read_status, receive, spec
from test_data_channel import Worker as DataWorker

import paramstore
from paramstore.client.errors import StoreNotFound, Unauthenticated


def scrape(port):
    """Every sample of the endpoint, as {(name, sorted label items): value}."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


@pytest.fixture
def metered(make_server):
    return make_server(metrics_port=0)


def test_calls_are_counted_by_method_and_status(metered):
    with metered.connect() as client:
        client.create_store("mlp")
        client.list_stores()
        client.list_stores()
        with pytest.raises(StoreNotFound):
            client.store("missing").info()
    samples = scrape(metered.server.metrics.port)
    calls = "paramstore_calls_total"
    assert samples[(calls, (("method", "CreateStore"), ("status", "OK")))] == 1
    assert samples[(calls, (("method", "ListStores"), ("status", "OK")))] == 2
    assert samples[(calls, (("method", "GetStore"), ("status", "NOT_FOUND")))] == 1


def test_calls_refused_for_their_token_are_counted(make_server):
    guarded = make_server(metrics_port=0, token="secret")
    with guarded.connect(token="wrong") as client, pytest.raises(Unauthenticated):
        client.store("s")
    samples = scrape(guarded.server.metrics.port)
    key = ("paramstore_calls_total", (("method", "GetStore"), ("status", "UNAUTHENTICATED")))
    assert samples[key] == 1


def test_pushed_and_pulled_bytes_are_counted(metered):
    # 3 MiB: several chunks each way, under the size that takes the data channel
    weights = {"w": np.ones(3 << 18, np.float32)}
    with metered.connect() as client:
        store = client.create_store("s")
        store.push(weights)
        store.pull({"w": np.zeros(3 << 18, np.float32)})
    samples = scrape(metered.server.metrics.port)
    assert samples[("paramstore_received_bytes_total", (("method", "Push"),))] >= 3 << 20
    assert samples[("paramstore_sent_bytes_total", (("method", "Pull"),))] >= 3 << 20


def test_store_sizes_are_read_at_every_scrape(metered):
    with metered.connect() as client:
        client.create_store("a").push({"w": np.ones(10, np.float64), "b": np.ones(3, np.int32)})
        client.create_store("b")
        samples = scrape(metered.server.metrics.port)
        assert samples[("paramstore_stores", ())] == 2
        assert samples[("paramstore_store_bytes", (("store", "a"),))] == 92
        assert samples[("paramstore_store_parameters", (("store", "a"),))] == 2
        client.delete_store("a")
    assert ("paramstore_store_bytes", (("store", "a"),)) not in scrape(metered.server.metrics.port)


def test_snapshot_durations_are_observed_for_take_and_restore(metered):
    with metered.connect() as client:
        store = client.create_store("s")
        store.push({"w": np.ones(100, np.float32)})
        first = store.snapshot()
        store.snapshot()
        store.restore(first.id)
    samples = scrape(metered.server.metrics.port)
    count = "paramstore_snapshot_duration_seconds_count"
    assert samples[(count, (("operation", "take"),))] == 2
    assert samples[(count, (("operation", "restore"),))] == 1


def test_paramstore_serve_metrics_port_serves_metrics(tmp_path):
    with running_server(tmp_path / "data", "--metrics-port", "0") as server:
        # Logged after the server took its address: it may come after the health check answers.
        eventually(lambda: "metrics on http" in "".join(server.log), 10, "the metrics address "
                   "logged")
        found = re.search(r"metrics on http://[\d.]+:(\d+)/metrics", "".join(server.log))
        assert found, "".join(server.log)
        with server.connect() as client:
            client.create_store("s")
        samples = scrape(int(found.group(1)))
    assert samples[("paramstore_calls_total", (("method", "CreateStore"), ("status", "OK")))] == 1


def test_only_paramstores_own_methods_are_counted(metered):
    channel = grpc.insecure_channel(metered.address)
    with channel:
        health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
        ProtoReflectionDescriptorDatabase(channel).get_services()
    with metered.connect() as client:
        client.list_stores()
    methods = {dict(labels).get("method") for name, labels in scrape(metered.server.metrics.port)
               if name.startswith("paramstore_")}
    assert methods == {None, "ListReplicas", "ListStores"}


def test_no_created_series_double_the_counters(metered):
    with metered.connect() as client:
        client.create_store("s").snapshot()
    assert not [name for name, _ in scrape(metered.server.metrics.port)
                if name.endswith("_created")]


def test_process_python_and_build_metrics_are_exported(metered):
    samples = scrape(metered.server.metrics.port)
    names = {name for name, _ in samples}
    assert {"process_resident_memory_bytes", "process_cpu_seconds_total", "python_info",
            "python_gc_collections_total"} <= names
    (build,) = [dict(labels) for name, labels in samples if name == "paramstore_build_info"]
    assert build["version"] == paramstore.__version__ and build["grpc"] == grpc.__version__


def test_duration_buckets_reach_half_an_hour(metered):
    with metered.connect() as client:
        client.create_store("s").snapshot()
    samples = scrape(metered.server.metrics.port)
    for name in ("paramstore_snapshot_duration_seconds", "paramstore_call_duration_seconds"):
        bounds = {dict(labels)["le"] for sample, labels in samples if sample == f"{name}_bucket"}
        assert {"60.0", "300.0", "1800.0"} <= bounds, name


def test_data_channel_steps_are_counted_as_calls_by_status(make_server):
    metered = make_server(metrics_port=0)
    worker = DataWorker(metered.address)
    try:
        for value in (1.0, 2.0, 3.0):
            worker.step(value)
        assert worker.kv.data_channel
        stream = worker.admitted()  # a step of another rank than its ticket's is refused
        stream.sendall(header(begin(worker, rank=worker.kv.rank), spec()) + gradient())
        assert read_status(stream).code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
        stream.close()
    finally:
        worker.close()
    # A step is counted once answered, the refused one before its status is sent.
    ok = ("paramstore_calls_total", (("method", "DataChannel"), ("status", "OK")))
    eventually(lambda: scrape(metered.server.metrics.port).get(ok) == 3, 10, "3 steps counted")
    samples = scrape(metered.server.metrics.port)
    assert samples[("paramstore_calls_total",
                    (("method", "DataChannel"), ("status", "INVALID_ARGUMENT")))] == 1
    assert samples[("paramstore_call_duration_seconds_count", (("method", "DataChannel"),))] == 4


def test_data_channel_steps_count_the_bytes_they_receive_and_send(make_server):
    metered = make_server(metrics_port=0)
    worker = DataWorker(metered.address)
    try:
        stream = worker.admitted()
        step = header(begin(worker), spec()) + gradient()
        stream.sendall(step)
        assert read_status(stream).code == 0  # an empty status: its length alone
        answer = receive(stream, len(gradient()))
        stream.close()
    finally:
        worker.close()
    counted = {("paramstore_received_bytes_total", (("method", "DataChannel"),)): len(step),
               ("paramstore_sent_bytes_total", (("method", "DataChannel"),)):
                   LENGTH.size + len(answer)}

    def told() -> dict:
        samples = scrape(metered.server.metrics.port)
        return {key: samples.get(key) for key in counted}

    eventually(lambda: told() == counted, 10, f"the step's bytes counted: {counted}")
