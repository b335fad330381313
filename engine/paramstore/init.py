"""Initializers (Gluon's `init`, also importable as `paramstore.initializer`).

An initializer fills a parameter's array in place. It is called as `ini(desc, arr)` where `desc`
is an `InitDesc` (the parameter's name plus attributes) and `arr` an `NDArray`:

* `desc.attrs['__init__']` set (what Gluon's `Parameter` always does): that initializer is
  resolved and only its `_init_weight` runs, whatever the name ends with;
* no `'__init__'`: the name's ending picks the hook (`..._weight` -> `_init_weight`,
  `..._bias` -> `_init_bias`, ...);
* a plain `str` name: the deprecated legacy dispatch.

Initializers travel as data: `dumps()` gives `[class name, constructor kwargs]` as JSON and
`create()` rebuilds one from a registry of classes, never by unpickling or evaluating code.
Random values come from `paramstore.random.generator()`.
"""

from __future__ import annotations

import json
import logging
import re
import warnings
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np

from paramstore import checkpoint
from paramstore import random as _random
from paramstore.nd.ndarray import NDArray

__all__ = [
    "Bilinear", "Constant", "FusedRNN", "InitDesc", "Initializer", "LSTMBias", "Load",
    "MSRAPrelu", "Mixed", "Normal", "One", "Orthogonal", "Uniform", "Xavier", "Zero",
    "alias", "create", "register", "registered_names",
]

_log = logging.getLogger(__name__)

_LEGACY_CALL_WARNING = (
    "\x1b[91mCalling initializer with init(str, NDArray) has been deprecated."
    "please use init(mx.init.InitDesc(...), NDArray) instead.\x1b[0m"
)


class InitDesc(str):
    """A parameter's name, with the attributes and global initializer an initializer may use.

    `attrs['__init__']` names the initializer chosen for this parameter (an `Initializer` or a
    registry string); `global_init` is the initializer that was called first, which composite
    initializers such as `FusedRNN` fall back to.
    """

    attrs: dict[str, Any]
    global_init: Initializer | None

    def __new__(
        cls, name: str, attrs: dict[str, Any] | None = None,
        global_init: Initializer | None = None,
    ) -> InitDesc:
        desc = super().__new__(cls, name)
        desc.attrs = attrs or {}
        desc.global_init = global_init
        return desc


def _norm_per_element(arr: Any) -> str:
    """Gluon's default verbose statistic: `norm(arr) / sqrt(arr.size)`, in the array's dtype."""
    data = np.asarray(arr)
    stat = np.linalg.norm(data) / np.sqrt(data.size)
    return str(data.dtype.type(stat) if np.issubdtype(data.dtype, np.floating) else stat)


class Initializer:
    """Base class: subclasses override `_init_weight(name, arr)` and write `arr[:] = ...`.

    Keyword arguments given to `__init__` are what `dumps()` records, so a subclass passes its
    constructor arguments up: `super().__init__(scale=scale)`.
    """

    def __init__(self, **kwargs: Any) -> None:
        self._kwargs = kwargs
        self._verbose = False
        self._print_func: Callable[[Any], str] | None = None

    def set_verbosity(
        self, verbose: bool = False, print_func: Callable[[Any], str] | None = None
    ) -> Initializer:
        """Log `Initialized {name} as {init}: {print_func(arr)}` at INFO after each fill.

        `print_func` receives the filled array; the default prints `norm(arr)/sqrt(arr.size)`.
        Returns the initializer itself.
        """
        self._verbose = verbose
        self._print_func = print_func or _norm_per_element
        return self

    def dumps(self) -> str:
        """JSON `[lower-cased class name, constructor kwargs]`, the form `create()` reads back."""
        return json.dumps([type(self).__name__.lower(), self._kwargs])

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Initializer):
            return NotImplemented
        return type(self) is type(other) and self._kwargs == other._kwargs

    __hash__ = None  # type: ignore[assignment]  # equal by value, mutable kwargs: as in Gluon

    def __call__(self, desc: Any, arr: Any) -> None:
        """Fill `arr` in place for the parameter `desc` (dispatch rules in the module docstring).

        Raises what the chosen hook raises: `NotImplementedError` from a base `_init_weight`,
        `ValueError` for a name no hook accepts.
        """
        if not isinstance(desc, InitDesc):
            self._legacy_init(desc, arr)
            return
        if desc.global_init is None:
            desc.global_init = self
        chosen = desc.attrs.get("__init__", "")
        if chosen:
            create(chosen)._init_weight(desc, arr)
            self._verbose_print(desc, chosen, arr)
            return
        for suffix, hook in _SUFFIX_HOOKS:
            if desc.endswith(suffix):
                getattr(self, hook)(desc, arr)
                self._verbose_print(desc, suffix, arr)
                return
        self._init_default(desc, arr)

    def _legacy_init(self, name: Any, arr: Any) -> None:
        warnings.warn(_LEGACY_CALL_WARNING, DeprecationWarning, stacklevel=3)
        if not isinstance(name, str):
            raise TypeError(f"name must be string, got {type(name).__name__}")
        if name.startswith("upsampling"):
            self._init_bilinear(name, arr)
        elif name.startswith("stn_loc") and name.endswith("weight"):
            self._init_zero(name, arr)
        elif name.startswith("stn_loc") and name.endswith("bias"):
            self._init_loc_bias(name, arr)
        else:
            hook = next((h for suffix, h in _LEGACY_SUFFIX_HOOKS if name.endswith(suffix)), None)
            getattr(self, hook or "_init_default")(name, arr)

    def _verbose_print(self, desc: str, chosen: Any, arr: Any) -> None:
        if self._verbose and self._print_func is not None:
            _log.info("Initialized %s as %s: %s", desc, chosen, self._print_func(arr))

    # ---- hooks: each writes `arr` in place -------------------------------------------------
    def _init_weight(self, name: str, arr: Any) -> None:
        raise NotImplementedError("Must override it")

    def _init_default(self, name: str, arr: Any) -> None:
        raise ValueError(
            f"Unknown initialization pattern for {name}. Default initialization is now limited "
            'to "weight", "bias", "gamma" (1.0), and "beta" (0.0).Please use '
            "mx.sym.Variable(init=mx.init.*) to set initialization pattern"
        )

    def _init_zero(self, name: str, arr: Any) -> None:
        arr[:] = 0.0

    def _init_one(self, name: str, arr: Any) -> None:
        arr[:] = 1.0

    def _init_bias(self, name: str, arr: Any) -> None:
        arr[:] = 0.0

    def _init_gamma(self, name: str, arr: Any) -> None:
        arr[:] = 1.0

    def _init_beta(self, name: str, arr: Any) -> None:
        arr[:] = 0.0

    def _init_bilinear(self, name: str, arr: Any) -> None:
        arr[:] = _bilinear_kernel(name, arr.shape)

    def _init_loc_bias(self, name: str, arr: Any) -> None:
        # A spatial transformer's localisation bias starts at the identity affine transform.
        if arr.shape[0] != 6:
            raise ValueError(f"{name} needs 6 elements for an affine transform, got {arr.shape}")
        arr[:] = np.array([1.0, 0.0, 0.0, 0.0, 1.0, 0.0])

    def _init_quantized_weight(self, name: str, arr: Any) -> None:
        # Gluon draws one int8 value and fills the whole array with it.
        arr[:] = np.int8(_random.generator().integers(-127, 127))

    def _init_quantized_bias(self, name: str, arr: Any) -> None:
        arr[:] = 0


# Name endings checked in order when no '__init__' attribute chooses the initializer.
_SUFFIX_HOOKS = (
    ("weight", "_init_weight"),
    ("bias", "_init_bias"),
    ("gamma", "_init_gamma"),
    ("beta", "_init_beta"),
    ("min", "_init_zero"),
    ("max", "_init_one"),
    ("weight_quantize", "_init_quantized_weight"),
    ("bias_quantize", "_init_quantized_bias"),
)

# The deprecated plain-string call checks these endings, in this order.
_LEGACY_SUFFIX_HOOKS = (
    ("bias", "_init_bias"),
    ("gamma", "_init_gamma"),
    ("beta", "_init_beta"),
    ("weight", "_init_weight"),
    ("moving_mean", "_init_zero"),
    ("moving_var", "_init_one"),
    ("moving_inv_var", "_init_zero"),
    ("moving_avg", "_init_zero"),
    ("min", "_init_zero"),
    ("max", "_init_one"),
)


# ---- the registry ------------------------------------------------------------------------------
_REGISTRY: dict[str, type[Initializer]] = {}
_InitializerClass = TypeVar("_InitializerClass", bound=type[Initializer])


def register(klass: _InitializerClass) -> _InitializerClass:
    """Class decorator: make `klass` creatable by its lower-cased name (`create('myinit')`).

    Raises `TypeError` when `klass` is not an `Initializer` subclass; warns when the name was
    already taken (the new class wins).
    """
    return alias(klass.__name__)(klass)


def alias(*names: str) -> Callable[[_InitializerClass], _InitializerClass]:
    """Class decorator: register `klass` under each of `names` (case-insensitive)."""

    def register_names(klass: _InitializerClass) -> _InitializerClass:
        if not (isinstance(klass, type) and issubclass(klass, Initializer)):
            raise TypeError(f"Can only register subclass of Initializer, got {klass!r}")
        for name in names:
            key = name.lower()
            previous = _REGISTRY.get(key)
            if previous is not None and previous is not klass:
                warnings.warn(
                    f"New initializer {klass.__module__}.{klass.__name__} registered with name "
                    f"{key} is overriding existing initializer "
                    f"{previous.__module__}.{previous.__name__}",
                    UserWarning, stacklevel=3,
                )
            _REGISTRY[key] = klass
        return klass

    return register_names


def registered_names() -> list[str]:
    """Every name `create()` accepts, sorted (aliases such as 'zeros' included)."""
    return sorted(_REGISTRY)


def create(initializer: Any, **kwargs: Any) -> Initializer:
    """An `Initializer` from an instance, a registered name, or its JSON.

    Accepts an instance (returned as is), a registered name in any case (`'Xavier'`, with
    `kwargs` for its constructor), a JSON list `'["normal", {"sigma": 0.5}]'`, a JSON object
    `'{"initializer": "constant", "value": 3}'` or the same as a dict. JSON is only ever turned
    into a registered class and keyword arguments.

    Raises `AssertionError` (as Gluon does) for an unknown name or a value that is neither a
    string nor an `Initializer`, `ValueError` for malformed JSON, `TypeError` for keyword
    arguments the class does not take.
    """
    if isinstance(initializer, Initializer):
        if kwargs:
            raise AssertionError(
                "initializer is already an instance. Additional arguments are invalid"
            )
        return initializer
    if isinstance(initializer, dict):
        return _create_from_object({**initializer, **kwargs})
    if not isinstance(initializer, str):
        raise AssertionError("initializer must be of string type")
    if initializer.startswith(("[", "{")):
        if kwargs:
            raise ValueError("a JSON initializer cannot take extra keyword arguments")
        parsed = _parse_json(initializer)
        if isinstance(parsed, dict):
            return _create_from_object(parsed)
        if not (isinstance(parsed, list) and len(parsed) == 2 and isinstance(parsed[1], dict)):
            raise ValueError(
                f"an initializer's JSON list must be [name, {{kwargs}}], got {initializer!r}"
            )
        return create(parsed[0], **parsed[1])
    name = initializer.lower()
    if name not in _REGISTRY:
        raise AssertionError(
            f"{name} is not registered. Please register with initializer.register first"
        )
    return _REGISTRY[name](**kwargs)


def _create_from_object(fields: dict[str, Any]) -> Initializer:
    kwargs = dict(fields)
    return create(kwargs.pop("initializer", None), **kwargs)


def _parse_json(text: str) -> Any:
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("initializer JSON is nested too deeply") from None


# ---- the initializers ------------------------------------------------------------------------
@alias("zeros")
@register
class Zero(Initializer):
    """Fills with 0."""

    def __init__(self) -> None:
        super().__init__()

    def _init_weight(self, name: str, arr: Any) -> None:
        arr[:] = 0.0


@alias("ones")
@register
class One(Initializer):
    """Fills with 1."""

    def __init__(self) -> None:
        super().__init__()

    def _init_weight(self, name: str, arr: Any) -> None:
        arr[:] = 1.0


def _json_value(value: Any) -> Any:
    """A constant as JSON can hold it: arrays and sequences become (nested) lists."""
    if isinstance(value, (NDArray, np.ndarray, np.generic, list, tuple)):
        return np.asarray(value).tolist()
    return value


@register
class Constant(Initializer):
    """Fills with `value`: a scalar, or anything that broadcasts to the array's shape."""

    def __init__(self, value: Any) -> None:
        self.value = value
        super().__init__(value=_json_value(value))

    def _init_weight(self, name: str, arr: Any) -> None:
        arr[:] = np.asarray(self.value)


@register
class Uniform(Initializer):
    """Draws i.i.d. from U(-scale, scale); `Uniform()` is the global default initializer."""

    def __init__(self, scale: float = 0.07) -> None:
        super().__init__(scale=scale)
        self.scale = scale

    def _init_weight(self, name: str, arr: Any) -> None:
        arr[:] = _random.generator().uniform(-self.scale, self.scale, arr.shape)


@register
class Normal(Initializer):
    """Draws i.i.d. from N(0, sigma^2)."""

    def __init__(self, sigma: float = 0.01) -> None:
        super().__init__(sigma=sigma)
        self.sigma = sigma

    def _init_weight(self, name: str, arr: Any) -> None:
        arr[:] = _random.generator().normal(0.0, self.sigma, arr.shape)


@register
class Xavier(Initializer):
    """Scale by fan: U(-c, c) or N(0, c^2) with c = sqrt(magnitude / factor).

    For a shape (out, in, *kernel), fan_in = in * prod(kernel) and fan_out = out * prod(kernel);
    `factor_type` picks their mean ('avg'), fan_in ('in') or fan_out ('out'). Filling raises
    `ValueError` for an array of fewer than 2 dimensions, an unknown `factor_type` or an unknown
    `rnd_type` ('uniform' or 'gaussian').
    """

    def __init__(
        self, rnd_type: str = "uniform", factor_type: str = "avg", magnitude: float = 3
    ) -> None:
        super().__init__(rnd_type=rnd_type, factor_type=factor_type, magnitude=magnitude)
        self.rnd_type = rnd_type
        self.factor_type = factor_type
        self.magnitude = float(magnitude)

    def _init_weight(self, name: str, arr: Any) -> None:
        shape = arr.shape
        if len(shape) < 2:
            raise ValueError(
                f"Xavier initializer cannot be applied to vector {name}. It requires at least 2D."
            )
        kernel_size = float(np.prod(shape[2:]))
        fan_in, fan_out = shape[1] * kernel_size, shape[0] * kernel_size
        factors = {"avg": (fan_in + fan_out) / 2.0, "in": fan_in, "out": fan_out}
        if self.factor_type not in factors:
            raise ValueError("Incorrect factor type")
        scale = np.sqrt(self.magnitude / factors[self.factor_type])
        if self.rnd_type == "uniform":
            arr[:] = _random.generator().uniform(-scale, scale, shape)
        elif self.rnd_type == "gaussian":
            arr[:] = _random.generator().normal(0.0, scale, shape)
        else:
            raise ValueError("Unknown random type")


@register
class MSRAPrelu(Xavier):
    """He initialization for PReLU layers: `Xavier('gaussian', factor_type, 2 / (1 + slope^2))`."""

    def __init__(self, factor_type: str = "avg", slope: float = 0.25) -> None:
        super().__init__("gaussian", factor_type, 2.0 / (1 + slope**2))
        self._kwargs = {"factor_type": factor_type, "slope": slope}


@register
class Orthogonal(Initializer):
    """Rows (or columns, whichever are fewer) orthogonal with norm `scale`.

    Draws a (shape[0], prod(shape[1:])) matrix from U(-1, 1) (`rand_type='uniform'`) or N(0, 1)
    (`'normal'`) and keeps the factor of its reduced SVD that has the matrix's shape. Filling
    raises `ValueError` for another `rand_type`.
    """

    def __init__(self, scale: float = 1.414, rand_type: str = "uniform") -> None:
        super().__init__(scale=scale, rand_type=rand_type)
        self.scale = scale
        self.rand_type = rand_type

    def _init_weight(self, name: str, arr: Any) -> None:
        matrix_shape = (arr.shape[0], int(np.prod(arr.shape[1:])))
        if self.rand_type == "uniform":
            drawn = _random.generator().uniform(-1.0, 1.0, matrix_shape)
        elif self.rand_type == "normal":
            drawn = _random.generator().normal(0.0, 1.0, matrix_shape)
        else:
            raise ValueError("Unknown random type")
        u, _, v = np.linalg.svd(drawn, full_matrices=False)
        orthogonal = u if u.shape == drawn.shape else v
        arr[:] = self.scale * orthogonal.reshape(arr.shape)


def _bilinear_kernel(name: str, shape: tuple[int, ...]) -> np.ndarray:
    """The bilinear upsampling filter on every (N, C) plane of a 4-D shape."""
    if len(shape) != 4:
        raise ValueError(f"Bilinear initializer needs a 4-D (N, C, H, W) array; {name} is {shape}")
    height, width = shape[2], shape[3]
    f = np.ceil(width / 2.0)
    centre = (2 * f - 1 - f % 2) / (2.0 * f)
    # Both axes use the width's f, as Gluon does for non-square kernels.
    rows = 1 - np.abs(np.arange(height) / f - centre)
    cols = 1 - np.abs(np.arange(width) / f - centre)
    return np.broadcast_to(np.outer(rows, cols), shape).astype(np.float32)


@register
class Bilinear(Initializer):
    """The bilinear upsampling filter, for (N, C, H, W) deconvolution weights."""

    def __init__(self) -> None:
        super().__init__()

    def _init_weight(self, name: str, arr: Any) -> None:
        self._init_bilinear(name, arr)


@register
class LSTMBias(Initializer):
    """Zeros, except `forget_bias` on the forget gate: the second quarter of the vector."""

    def __init__(self, forget_bias: float = 1.0) -> None:
        super().__init__(forget_bias=forget_bias)
        self.forget_bias = forget_bias

    def _init_weight(self, name: str, arr: Any) -> None:
        num_hidden = int(arr.shape[0] / 4)
        arr[:] = 0.0
        arr[num_hidden:2 * num_hidden] = self.forget_bias


_RNN_GATES = {"lstm": ("_i", "_f", "_c", "_o"), "gru": ("_r", "_z", "_o"),
              "rnn_relu": ("",), "rnn_tanh": ("",)}


def _fused_rnn_layout(
    size: int, num_hidden: int, num_layers: int, mode: str, bidirectional: bool
) -> list[tuple[str, int, tuple[int, ...]]]:
    """(name, offset, shape) of each piece of a fused RNN parameter vector of `size` elements.

    All weights come first (per layer, per direction: i2h per gate, then h2h per gate), then all
    biases in the same order. The input size is whatever makes the pieces add up to `size`.
    """
    if mode not in _RNN_GATES:
        raise ValueError(f"Unknown RNN mode {mode!r}; expected one of {sorted(_RNN_GATES)}")
    gates = _RNN_GATES[mode]
    directions = ("l", "r") if bidirectional else ("l",)
    h, n_dir = num_hidden, len(directions)
    mismatch = ValueError(
        f"Invalid parameters size for FusedRNNCell: {size} elements do not split into a "
        f"{mode} of {num_layers} layer(s) with {num_hidden} hidden units"
    )
    if not (isinstance(h, int) and isinstance(num_layers, int) and h >= 1 and num_layers >= 1):
        raise ValueError(f"FusedRNN needs num_hidden and num_layers of at least 1, got "
                         f"{num_hidden!r} and {num_layers!r}")
    per_block = n_dir * h * len(gates)
    num_input = size // per_block - (num_layers - 1) * (h + n_dir * h + 2) - h - 2
    if num_input <= 0:  # before the layout is built: its length grows with num_layers
        raise mismatch
    layout: list[tuple[str, int, tuple[int, ...]]] = []
    offset = 0

    def add(name: str, shape: tuple[int, ...]) -> None:
        nonlocal offset
        layout.append((name, offset, shape))
        offset += int(np.prod(shape))
        if offset > size:
            raise mismatch

    for layer in range(num_layers):
        layer_input = num_input if layer == 0 else n_dir * h
        for d in directions:
            for gate in gates:
                add(f"{d}{layer}_i2h{gate}_weight", (h, layer_input))
            for gate in gates:
                add(f"{d}{layer}_h2h{gate}_weight", (h, h))
    for layer in range(num_layers):
        for d in directions:
            for connection in ("i2h", "h2h"):
                for gate in gates:
                    add(f"{d}{layer}_{connection}{gate}_bias", (h,))
    if offset != size:
        raise mismatch
    return layout


@register
class FusedRNN(Initializer):
    """Initializes a fused RNN parameter vector piece by piece.

    The vector is split into per-gate weights and biases named like `l0_i2h_f_weight`; each is
    filled by `init` (or, when `init` is None, by the global initializer of the call) with
    name-suffix dispatch, so biases become 0. For `mode='lstm'` every forget-gate bias is set to
    `forget_bias`. `init` may be an `Initializer` or anything `create()` accepts.
    """

    def __init__(
        self, init: Any, num_hidden: int, num_layers: int, mode: str,
        bidirectional: bool = False, forget_bias: float = 1.0,
    ) -> None:
        initializer = None if init is None else create(init)
        super().__init__(
            init=None if initializer is None else initializer.dumps(), num_hidden=num_hidden,
            num_layers=num_layers, mode=mode, bidirectional=bidirectional,
            forget_bias=forget_bias,
        )
        self._init = initializer
        self._num_hidden = num_hidden
        self._num_layers = num_layers
        self._mode = mode
        self._bidirectional = bidirectional
        self._forget_bias = forget_bias

    def _init_weight(self, desc: str, arr: Any) -> None:
        global_init = getattr(desc, "global_init", None)
        piece_init = self._init or global_init
        if piece_init is None:
            raise ValueError(
                f"FusedRNN has no initializer for the pieces of {desc}: give it init= or call "
                "it with an InitDesc"
            )
        flat = np.array(arr).reshape(-1)
        layout = _fused_rnn_layout(
            flat.size, self._num_hidden, self._num_layers, self._mode, self._bidirectional
        )
        for name, offset, shape in layout:
            piece = NDArray._wrap(flat[offset:offset + int(np.prod(shape))].reshape(shape))
            if self._mode == "lstm" and name.endswith("_f_bias"):
                piece[:] = self._forget_bias
            else:
                piece_init(InitDesc(name, global_init=global_init), piece)
        arr[:] = flat.reshape(arr.shape)


class Mixed:
    """Picks an initializer by the first regular expression that matches the name.

    Called as `mixed(name, arr)`; the name is passed on unchanged. Not an `Initializer`: Gluon's
    `initialize` refuses it. Raises `ValueError` when no pattern matches.
    """

    def __init__(self, patterns: Sequence[str], initializers: Sequence[Any]) -> None:
        if len(patterns) != len(initializers):
            raise ValueError(
                f"Mixed needs one initializer per pattern, got {len(patterns)} patterns and "
                f"{len(initializers)} initializers"
            )
        self.map = [(re.compile(p), ini) for p, ini in zip(patterns, initializers)]

    def __call__(self, name: str, arr: Any) -> None:
        for pattern, initializer in self.map:
            if pattern.match(name):
                initializer(name, arr)
                return
        # Gluon's message, placeholder and typos included.
        raise ValueError(
            "Parameter name %s did not match any pattern. Consider"
            'add a ".*" pattern at the and with default Initializer.'
        )


class Load:
    """Fills parameters from saved arrays: a dict of name -> array, or a checkpoint file.

    Leading `arg:` / `aux:` are stripped from the saved names. A name that was not saved goes
    to `default_init`. Called as `load(name, arr)`; not usable with Gluon's `initialize`.
    Reading a file raises what `paramstore.checkpoint.load` raises.
    """

    def __init__(self, param: Any, default_init: Any = None, verbose: bool = False) -> None:
        if isinstance(param, str):
            param = checkpoint.load(param).tensors
        if not isinstance(param, dict):
            raise TypeError(f"Load needs a dict of arrays or a file name, got {type(param)}")
        self.param = {
            name[4:] if name.startswith(("arg:", "aux:")) else name: value
            for name, value in param.items()
        }
        self.default_init = default_init
        self.verbose = verbose

    def __call__(self, name: str, arr: Any) -> None:
        """Copy the saved array called `name` into `arr`, or run `default_init`.

        Raises `AssertionError` (as Gluon does) on a shape mismatch, or when `name` was not
        saved and there is no `default_init`.
        """
        if name in self.param:
            saved = self.param[name]
            if tuple(arr.shape) != tuple(saved.shape):
                raise AssertionError(
                    f"Parameter {name} cannot be initialized from loading. Shape mismatch, "
                    f"target {tuple(arr.shape)} vs loaded {tuple(saved.shape)}"
                )
            arr[:] = saved
            if self.verbose:
                _log.info("Initialized %s by loading", name)
            return
        if self.default_init is None:
            raise AssertionError(
                f"Cannot Initialize {name}. Not found in loaded param and no default "
                "Initializer is provided."
            )
        self.default_init(name, arr)
        if self.verbose:
            _log.info("Initialized %s by default", name)


