"""Gluon's refusals and warnings around Parameters and blocks, with Gluon 1.9.1's messages."""

import warnings

import pytest

from paramstore import gluon, nd
from paramstore.base import EngineError
from paramstore.gluon import nn


@pytest.mark.parametrize("stype", ["default", "row_sparse", "csr"])
def test_gluons_storage_types_are_accepted(stype):
    assert gluon.Parameter("w", shape=(1,), stype=stype).stype == stype


@pytest.mark.parametrize("keyword", ["stype", "grad_stype"])
def test_an_unknown_storage_type_is_refused_with_gluons_message(keyword):
    with pytest.raises(AssertionError, match=(
            f"^{keyword} for Parameter 'w' must be one of 'default', 'row_sparse', or 'csr', "
            "but got 'dense'$")):
        gluon.Parameter("w", **{keyword: "dense"})


def test_hybridizing_a_sequential_of_hybrid_blocks_suggests_hybrid_sequential(fresh_names):
    net = nn.Sequential()
    net.add(nn.Dense(2), nn.Dense(1))
    with pytest.warns(UserWarning, match="^All children of this Sequential layer 'sequential0_' "
                      "are HybridBlocks. Consider using HybridSequential"):
        net.hybridize()


def test_hybridizing_a_hybrid_sequential_or_a_mixed_sequential_is_silent():
    mixed = nn.Sequential()
    mixed.add(nn.Dense(2), nn.Sequential())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mixed.hybridize()
        nn.HybridSequential().hybridize()


def test_a_shape_mismatch_inside_an_op_is_the_engines_error_naming_the_op():
    with pytest.raises(EngineError, match="dot: operands of shapes \\(2, 3\\) and \\(2, 3\\)"):
        nd.dot(nd.ones((2, 3)), nd.ones((2, 3)))
