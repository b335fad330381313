"""A store's retention policy across moves between replicas: the snapshots a replica writes of
a store it hands over count for nothing against the user's, and only the newest is kept."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from replicas import Cluster
from test_cluster import _filled, _first_value, _settled

from paramstore.server.storage.retention import HAND_OVER


@pytest.fixture
def cluster(etcd_endpoint: str, s3_endpoint: str) -> Iterator[Cluster]:
    started = Cluster(etcd_endpoint, s3_endpoint, size=2, lease_ttl=3.0)
    yield started
    started.stop_all()


def test_hand_over_snapshots_neither_push_out_the_users_nor_pile_up(cluster: Cluster) -> None:
    cluster.start_all()
    with cluster.connect() as client:
        store = client.create_store("m")
        store.set_retention(keep_last=2)
        for step in (1, 2, 3):
            store.push(_filled(step).collect_params())
            store.snapshot(step=step)
        store.push(_filled(4.0).collect_params())  # acknowledged after the last snapshot
        _settled(cluster, "m")
        cluster.rolling_restart()  # each replica in turn hands the store over
        _settled(cluster, "m")
        listed = store.snapshots()
        assert [info.step for info in listed if info.metadata != HAND_OVER] == [2, 3]
        assert len([info for info in listed if info.metadata == HAND_OVER]) == 1
        assert listed[-1].metadata == HAND_OVER  # the newest: what the store resumed from
        assert _first_value(client, "m") == 4.0
