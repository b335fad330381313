"""Several servers, one service: replicas that own stores through etcd leases (`replica`),
records committed under the owner's fence (`records`, `membership`), stores placed by
rendezvous hashing with bounded load (`placement`)."""

from paramstore.server.cluster.membership import DEFAULT_LEASE_TTL, ClusterConfig, parse_url
from paramstore.server.cluster.replica import Replica

__all__ = ["DEFAULT_LEASE_TTL", "ClusterConfig", "Replica", "parse_url"]
