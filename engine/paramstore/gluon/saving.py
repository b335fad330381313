"""Saving and loading parameters as safetensors files, with Gluon's keys and messages.

Two key schemes, as in Gluon:

* structural (`Block.save_parameters`): the path of attributes and child keys leading to each
  registered Parameter (`0.weight`, `hidden.bias`), so a model built again later loads the
  file whatever its name prefix;
* by name (`ParameterDict.save`): full parameter names, minus an optional prefix.

A Parameter reachable under several keys (a tie) is one tensor in the file, its other keys
recorded as aliases by `paramstore.checkpoint`. Loading checks every key, shape, dtype and
context first and writes only when everything agrees, so a failed load changes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from paramstore import _files, checkpoint
from paramstore.context import Context
from paramstore.gluon.parameter import NAMING_HELP, Parameter, ParameterDict, brief_list
from paramstore.nd.ndarray import NDArray

if TYPE_CHECKING:
    from paramstore.gluon.block import Block

__all__ = [
    "load_model", "load_named", "load_named_file", "load_structural", "save_model", "save_named",
    "save_structural",
]


def _tensors(named: Iterable[tuple[str, Parameter]]) -> dict[str, np.ndarray]:
    """Each key's value; keys of one Parameter share one array object (the codec's tie)."""
    values: dict[int, np.ndarray] = {}
    tensors = {}
    for key, param in named:
        if id(param) not in values:
            values[id(param)] = param._reduce()
        tensors[key] = values[id(param)]
    return tensors


def save_structural(block: Block, filename: str, deduplicate: bool) -> None:
    """`Block.save_parameters`: structural keys; ties stored once (see module docstring)."""
    params = block._collect_params_with_prefix()
    if deduplicate:
        last_path = {id(param): key for key, param in params.items()}
        params = {key: param for key, param in params.items() if last_path[id(param)] == key}
    checkpoint.save(filename, _tensors(params.items()))


def save_named(params: ParameterDict, filename: str, strip_prefix: str) -> None:
    """`ParameterDict.save`: keys are names without `strip_prefix` (ValueError if absent)."""
    named = []
    for name, param in params.items():
        if not name.startswith(strip_prefix):
            raise ValueError(
                f"Prefix '{strip_prefix}' is to be striped before saving, but Parameter's name "
                f"'{name}' does not start with '{strip_prefix}'. this may be due to your Block "
                "shares parameters from other Blocks or you forgot to use 'with name_scope()' "
                f"when creating child blocks. {NAMING_HELP}"
            )
        named.append((name[len(strip_prefix):], param))
    checkpoint.save(filename, _tensors(named))


def _apply_all(loads: list[Any]) -> None:
    for load in loads:
        load.param._apply_load(load)


def _prepare(
    planned: dict[int, tuple[int, ...] | None],
    param: Parameter,
    data: np.ndarray,
    ctx: Context | list[Context] | None,
    cast_dtype: bool,
    dtype_source: str,
) -> Any:
    """Validate one load against the shape an earlier load in this batch gave the parameter."""
    load = param._prepare_load(
        data, ctx, cast_dtype, dtype_source, planned.get(id(param), param.shape)
    )
    planned[id(param)] = load.shape
    return load


def load_structural(
    block: Block,
    filename: str,
    ctx: Context | list[Context] | None,
    allow_missing: bool,
    ignore_extra: bool,
    cast_dtype: bool,
    dtype_source: str,
) -> None:
    """`Block.load_parameters` (messages in spec section 7.2)."""
    loaded = checkpoint.load(filename).tensors
    params = block._collect_params_with_prefix()
    if not loaded and not params:
        return
    if not any("." in key for key in loaded):
        block.collect_params().load(
            filename, ctx, allow_missing, ignore_extra, block.prefix, cast_dtype, dtype_source
        )
        return
    if not allow_missing:
        paths: dict[int, list[str]] = {}
        for key, param in params.items():
            paths.setdefault(id(param), []).append(key)
        for key, param in params.items():
            if not any(path in loaded for path in paths[id(param)]):
                raise AssertionError(
                    f"Parameter '{key}' is missing in file '{filename}', which contains "
                    f"parameters: {brief_list(loaded)}. Set allow_missing=True to ignore "
                    "missing parameters."
                )
    loads = []
    planned: dict[int, tuple[int, ...] | None] = {}
    for key, data in loaded.items():
        if key not in params:
            if ignore_extra:
                continue
            raise ValueError(
                f"Parameter '{key}' loaded from file '{filename}' is not present in "
                f"ParameterDict, which contains parameters {brief_list(block.params.keys())}. "
                "Set ignore_extra=True to ignore. "
            )
        loads.append(_prepare(planned, params[key], data, ctx, cast_dtype, dtype_source))
    _apply_all(loads)


def load_named_file(
    params: ParameterDict,
    filename: str,
    ctx: Context | list[Context] | None,
    allow_missing: bool,
    ignore_extra: bool,
    restore_prefix: str,
    cast_dtype: bool,
    dtype_source: str,
) -> None:
    """`ParameterDict.load` (messages in spec section 7.3)."""
    if restore_prefix:
        for name in params.keys():
            if not name.startswith(restore_prefix):
                raise AssertionError(
                    f"restore_prefix is '{restore_prefix}' but Parameters name '{name}' does "
                    f"not start with '{restore_prefix}'. {NAMING_HELP}"
                )
    loaded = checkpoint.load(filename).tensors
    load_named(
        params, loaded, ctx, allow_missing, ignore_extra, restore_prefix, filename, cast_dtype,
        dtype_source,
    )


def load_named(
    params: ParameterDict,
    param_dict: Mapping[str, Any],
    ctx: Context | list[Context] | None,
    allow_missing: bool,
    ignore_extra: bool,
    restore_prefix: str,
    filename: str | None,
    cast_dtype: bool,
    dtype_source: str,
) -> None:
    """`ParameterDict.load_dict`: names (minus `arg:`/`aux:`) get `restore_prefix` in front."""
    arrays = {
        restore_prefix + (key[4:] if key.startswith(("arg:", "aux:")) else key): (
            value._data if isinstance(value, NDArray) else np.asarray(value)
        )
        for key, value in param_dict.items()
    }
    source = f"file: {filename}" if filename else "param_dict"
    cut = len(restore_prefix)
    if not allow_missing:
        for name in params.keys():
            if name not in arrays:
                raise AssertionError(
                    f"Parameter '{name[cut:]}' is missing in {source}, which contains "
                    f"parameters: {brief_list(arrays)}. Please make sure source and target "
                    f"networks have the same prefix.{NAMING_HELP}"
                )
    loads = []
    planned: dict[int, tuple[int, ...] | None] = {}
    for name, data in arrays.items():
        if name not in params:
            if ignore_extra:
                continue
            raise AssertionError(
                f"Parameter '{name[cut:]}' loaded from {source} is not present in "
                f"ParameterDict, choices are: {brief_list(params.keys())}. Set ignore_extra "
                "to True to ignore. Please make sure source and target networks have the same "
                f"prefix.{NAMING_HELP}"
            )
        loads.append(_prepare(planned, params[name], data, ctx, cast_dtype, dtype_source))
    _apply_all(loads)


# ---- a model's structure and parameters (`Block.save` / `Block.load`) -------------------------
def _model_files(prefix: str) -> tuple[str, str]:
    return f"{prefix}-model.json", f"{prefix}-model.params"


def _structure(block: Block, index: list[int], into: dict[str, Any]) -> None:
    """Gluon's description of `block`: keyed by class name and visiting order, with the names
    its parent used for each child."""
    from paramstore.gluon.block import HybridBlock

    children: dict[str, str] = {}
    entry: dict[str, Any] = {"orig_name": block.name}
    if isinstance(block, HybridBlock):
        entry["hybridized"] = False  # no symbolic graph to keep: blocks run imperatively
    entry["children"] = children
    into[f"{type(block).__name__.lower()}{index[0]}"] = entry
    for key, child in block._children.items():
        index[0] += 1
        children[child.name] = key
        _structure(child, index, entry)


def save_model(block: Block, prefix: str) -> None:
    """`Block.save`: `<prefix>-model.json` (the structure) and `<prefix>-model.params`."""
    structure: dict[str, Any] = {}
    _structure(block, [0], structure)
    text = json.dumps(structure)
    structure_file, params_file = _model_files(prefix)

    def write(temporary: str) -> None:
        with open(temporary, "w") as file:
            file.write(text)

    _files.replace(structure_file, write)
    save_structural(block, params_file, deduplicate=False)


def _rename(block: Block, index: list[int], structure: dict[str, Any]) -> None:
    key = f"{type(block).__name__.lower()}{index[0]}"
    try:
        saved = structure[key]
    except KeyError:
        raise ValueError(
            f"the saved model has no block {key!r}: it was built differently from this one"
        ) from None
    block._name = saved["orig_name"]
    params = block.params
    renamed = {f"{block.name}_{name[len(params.prefix):]}": param
               for name, param in params._params.items()}
    params._params.clear()
    params._params.update(renamed)
    for child in block._children.values():
        index[0] += 1
        _rename(child, index, saved)
    block._children = {saved["children"][child.name]: child for child in block._children.values()}


def load_model(block: Block, prefix: str) -> None:
    """`Block.load`: give the blocks and parameter keys the names they were saved with, then
    load the parameters. The model must be built as it was when saved (Gluon's rule)."""
    structure_file, params_file = _model_files(prefix)
    with open(structure_file) as file:
        structure = json.load(file)
    _rename(block, [0], structure)
    load_structural(block, params_file, None, False, False, False, "current")
