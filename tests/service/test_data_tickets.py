"""Data channel tickets: valid once, for a while, one per rank, never guessed."""

from __future__ import annotations

import time
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from paramstore.server.data_tickets import TicketKind, Tickets
from paramstore.server.errors import ResourceExhausted

SESSION: Any = object()  # tickets only keep the session they are bound to


def test_a_ticket_admits_its_store_rank_and_session_once() -> None:
    tickets = Tickets()
    secret = tickets.issue("mlp", 3, SESSION)
    admitted = tickets.redeem(secret)
    assert admitted is not None
    assert (admitted.store, admitted.rank, admitted.session) == ("mlp", 3, SESSION)
    assert tickets.redeem(secret) is None


def test_an_expired_ticket_admits_nothing() -> None:
    tickets = Tickets(lifetime=0.05)
    secret = tickets.issue("mlp", 0, SESSION)
    time.sleep(0.1)
    assert tickets.redeem(secret) is None


def test_a_ranks_new_ticket_replaces_its_last() -> None:
    tickets = Tickets()
    old = tickets.issue("mlp", 0, SESSION)
    other_rank = tickets.issue("mlp", 1, SESSION)
    new = tickets.issue("mlp", 0, SESSION)
    assert tickets.redeem(old) is None
    assert tickets.redeem(new) is not None
    assert tickets.redeem(other_rank) is not None


def test_tickets_beyond_the_limit_are_refused_until_some_expire() -> None:
    tickets = Tickets(lifetime=0.1, limit=2)
    tickets.issue("a", 0, SESSION)
    tickets.issue("b", 0, SESSION)
    with pytest.raises(ResourceExhausted, match="outstanding"):
        tickets.issue("c", 0, SESSION)
    time.sleep(0.15)
    assert tickets.redeem(tickets.issue("c", 0, SESSION)) is not None


def test_transfer_tickets_are_bound_to_their_kind_and_count_against_the_limit() -> None:
    tickets = Tickets(limit=3)
    steps = tickets.issue("a", 0, SESSION)
    reads = [tickets.issue_transfer("a", TicketKind.READ) for _ in range(2)]
    with pytest.raises(ResourceExhausted, match="outstanding"):
        tickets.issue_transfer("a", TicketKind.WRITE)
    admitted = [tickets.redeem(secret) for secret in (steps, *reads)]
    assert [ticket.kind for ticket in admitted if ticket] == [TicketKind.STEPS, TicketKind.READ,
                                                              TicketKind.READ]
    assert [ticket.session for ticket in admitted if ticket] == [SESSION, None, None]


@given(st.binary(min_size=0, max_size=64))
def test_bytes_that_were_not_issued_admit_nothing(presented: bytes) -> None:
    tickets = Tickets()
    issued = tickets.issue("mlp", 0, SESSION)
    if presented != issued:
        assert tickets.redeem(presented) is None
        assert tickets.redeem(issued) is not None
