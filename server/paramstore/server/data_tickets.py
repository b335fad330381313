"""Tickets of the data channel: how a worker that joined a store's training, or a reader of a
store, is admitted on a plain connection once its gRPC call (token, read-only check and mutual
TLS) passed.

A ticket is 32 random bytes, valid once and for seconds, bound to one store and one kind of
use: one rank's steps in the store's training session, one read of the store, or one push.
Tickets are kept by the SHA-256 of their bytes, so that looking one up tells a timing observer
nothing about the bytes themselves, and then compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING

from paramstore.proto import data_frames as frames
from paramstore.server.errors import ResourceExhausted

if TYPE_CHECKING:
    from paramstore.server.training import TrainingSession

TICKET_SECONDS = 10.0
MAX_TICKETS = 1024  # outstanding at once; more is a client asking in a loop


class TicketKind(Enum):
    """What a connection admitted with the ticket serves."""

    STEPS = "steps"  # a rank's training steps
    READ = "read"  # one read of a store's tensors (`data_transfers`)
    WRITE = "write"  # one push into a store (`data_transfers`)


@dataclass(frozen=True)
class Ticket:
    """What a redeemed ticket admits: one worker's steps on one store's training, or (kinds
    READ and WRITE, no rank or session) one read of the store or one push into it."""

    store: str
    rank: int
    session: TrainingSession | None
    expires: float
    kind: TicketKind = TicketKind.STEPS
    request_id: str = ""  # a WRITE's: the push runs under it (`request_ids`)


class Tickets:
    """Outstanding tickets. A rank has one at most: a new one replaces the last, so steps
    tickets are bounded by the ranks joined; every kind counts against `limit`."""

    def __init__(self, lifetime: float = TICKET_SECONDS, limit: int = MAX_TICKETS) -> None:
        self.lifetime = lifetime
        self._limit = limit
        self._tickets: dict[bytes, tuple[bytes, Ticket]] = {}
        self._of_rank: dict[tuple[str, int], bytes] = {}  # -> the digest of its ticket
        self._lock = threading.Lock()

    def issue(self, store: str, rank: int, session: TrainingSession) -> bytes:
        """A new ticket for `rank` of `store`'s `session`. Raises `ResourceExhausted` when
        too many are outstanding."""
        return self._issue(store, rank, session, TicketKind.STEPS)

    def issue_transfer(self, store: str, kind: TicketKind, request_id: str = "") -> bytes:
        """A new ticket for one read of `store` or one push into it (`kind`; a push under
        `request_id`). Raises `ResourceExhausted` when too many are outstanding."""
        return self._issue(store, -1, None, kind, request_id)

    def _issue(self, store: str, rank: int, session: TrainingSession | None,
               kind: TicketKind, request_id: str = "") -> bytes:
        secret = secrets.token_bytes(frames.TICKET_BYTES)
        now = time.monotonic()
        with self._lock:
            self._drop_expired(now)
            if kind is TicketKind.STEPS:
                self._tickets.pop(self._of_rank.pop((store, rank), b""), None)
            if len(self._tickets) >= self._limit:
                raise ResourceExhausted(
                    f"{self._limit} data channel tickets are outstanding, the server's limit; "
                    "retry shortly")
            digest = _digest(secret)
            self._tickets[digest] = (secret, Ticket(store, rank, session, now + self.lifetime,
                                                    kind, request_id))
            if kind is TicketKind.STEPS:
                self._of_rank[store, rank] = digest
        return secret

    def redeem(self, presented: bytes) -> Ticket | None:
        """The ticket `presented`, used up; None when it is unknown, used or expired."""
        digest = _digest(presented)
        with self._lock:
            entry = self._tickets.pop(digest, None)
            if entry is not None and self._of_rank.get((entry[1].store, entry[1].rank)) == digest:
                del self._of_rank[entry[1].store, entry[1].rank]
        if entry is None or not hmac.compare_digest(entry[0], presented):
            return None
        return entry[1] if entry[1].expires > time.monotonic() else None

    def _drop_expired(self, now: float) -> None:
        for key in [key for key, (_, ticket) in self._tickets.items() if ticket.expires <= now]:
            ticket = self._tickets.pop(key)[1]
            if self._of_rank.get((ticket.store, ticket.rank)) == key:
                del self._of_rank[ticket.store, ticket.rank]


def _digest(secret: bytes) -> bytes:
    return hashlib.sha256(secret).digest()
