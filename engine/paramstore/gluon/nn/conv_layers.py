"""Convolution, transposed convolution, pooling and reflection-padding layers.

Arguments, defaults, parameter names (`conv0_weight`, `conv0_bias`), shapes, reprs and the
errors of bad arguments are Gluon 1.x's. `in_channels=0` leaves the input channel count to the
first forward pass (deferred initialization). The layers run `nd.Convolution`,
`nd.Deconvolution`, `nd.Pooling` and `nd.pad`.
"""

from __future__ import annotations

from numbers import Number
from typing import Any

from paramstore.base import EngineError
from paramstore.gluon.block import HybridBlock
from paramstore.gluon.nn.basic_layers import Activation
from paramstore.nd.conv import FUSED_ACTIVATIONS

__all__ = [
    "Conv1D", "Conv2D", "Conv3D", "Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose",
    "MaxPool1D", "MaxPool2D", "MaxPool3D", "AvgPool1D", "AvgPool2D", "AvgPool3D",
    "GlobalMaxPool1D", "GlobalMaxPool2D", "GlobalMaxPool3D",
    "GlobalAvgPool1D", "GlobalAvgPool2D", "GlobalAvgPool3D", "ReflectionPad2D",
]

_SPATIAL_NAMES = {1: "W", 2: "HW", 3: "DHW"}


def _require(condition: bool, message: str) -> None:
    """Gluon checks its layer arguments with assertions; raise the same AssertionError."""
    if not condition:
        raise AssertionError(message)


def _repeat(value: Any, count: int) -> Any:
    """A number repeated `count` times; a sequence stays as the user gave it (reprs show it)."""
    return (value,) * count if isinstance(value, Number) else value


def _check_layout(layout: str, count: int, what: str) -> None:
    first = f"NC{_SPATIAL_NAMES[count]}"
    last = f"N{_SPATIAL_NAMES[count]}C"
    allowed = (first,) if count == 1 and what == "conv" else (first, last)
    if what == "conv":
        message = f"Only supports {' and '.join(repr(a) for a in allowed)} layout for now"
    else:
        message = f"Only {first} and {last} layouts are valid for {count}D Pooling"
    _require(layout in allowed, message)


def _check_rank(block: str, x: Any, layout: str) -> None:
    if x.ndim != len(layout):
        raise EngineError(
            f"{block}: input should be {len(layout)}D in layout {layout}, got shape {x.shape}"
        )


class _Conv(HybridBlock):
    """What every convolution layer shares: parameters, deferred channels, repr, forward."""

    _op_name = "Convolution"

    def __init__(
        self, channels: int, kernel_size: Any, strides: Any, padding: Any, dilation: Any,
        groups: int, layout: str, in_channels: int, activation: str | None, use_bias: bool,
        weight_initializer: Any, bias_initializer: Any, adj: Any = None, **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        count = len(kernel_size)
        self._channels = channels
        self._in_channels = in_channels
        self._layout = layout
        self._kwargs = {
            "kernel": kernel_size, "stride": _repeat(strides, count),
            "dilate": _repeat(dilation, count), "pad": _repeat(padding, count),
            "num_filter": channels, "num_group": groups, "no_bias": not use_bias,
            "layout": layout,
        }
        if adj is not None:
            self._kwargs["adj"] = adj
        with self.name_scope():
            self.weight = self.params.get(
                "weight", shape=self._weight_shape(in_channels), init=weight_initializer,
                allow_deferred_init=True,
            )
            if use_bias:
                self.bias = self.params.get(
                    "bias", shape=(channels,), init=bias_initializer, allow_deferred_init=True
                )
            else:
                self.bias = None
            self.act = Activation(activation, prefix=activation + "_") if activation else None

    def _alias(self) -> str:
        return "conv"

    def _filter_dims(self, in_channels: int) -> tuple[int, int]:
        """The weight's two channel dimensions: (outputs, inputs per group)."""
        groups = self._kwargs["num_group"]
        return self._channels, in_channels // groups

    def _weight_shape(self, in_channels: int) -> tuple[int, ...]:
        first, second = self._filter_dims(in_channels)
        kernel = tuple(self._kwargs["kernel"])
        if self._layout[1] == "C":
            return (first, second) + kernel
        return (first,) + kernel + (second,)

    def infer_shape(self, x: Any, *args: Any) -> None:
        _check_rank(type(self).__name__, x, self._layout)
        self.weight.shape = self._weight_shape(x.shape[self._layout.find("C")])

    def hybrid_forward(self, F: Any, x: Any, weight: Any, bias: Any = None) -> Any:
        _check_rank(type(self).__name__, x, self._layout)
        op = getattr(F, self._op_name)
        act = self.act
        if act is None:
            return op(x, weight, bias, **self._kwargs)
        watched = act._forward_hooks or act._forward_pre_hooks
        if act._act_type in FUSED_ACTIVATIONS and not watched:
            # One op instead of two: the activation runs in place, its gradient from the output.
            return op(x, weight, bias, act_type=act._act_type, **self._kwargs)
        return act(op(x, weight, bias, **self._kwargs))

    def __repr__(self) -> str:
        k = self._kwargs
        count = len(k["kernel"])
        text = f"{type(self).__name__}({{mapping}}, kernel_size={k['kernel']}, stride={k['stride']}"
        if tuple(k["pad"]) != (0,) * count:
            text += f", padding={k['pad']}"
        if tuple(k["dilate"]) != (1,) * count:
            text += f", dilation={k['dilate']}"
        if k["num_group"] != 1:
            text += f", groups={k['num_group']}"
        if self.bias is None:
            text += ", bias=False"
        if self.act is not None:
            text += f", {self.act}"
        shape = self.weight.shape
        return text.format(mapping=f"{shape[1] if shape[1] else None} -> {shape[0]}") + ")"


class _ConvTranspose(_Conv):
    """Transposed convolutions keep their weight as (in_channels, channels/groups, *kernel)."""

    _op_name = "Deconvolution"

    def _filter_dims(self, in_channels: int) -> tuple[int, int]:
        return in_channels, self._channels // self._kwargs["num_group"]


def _conv_args(
    count: int, kernel_size: Any, layout: str, output_padding: Any = None
) -> tuple[Any, Any]:
    """The kernel size and output padding as Gluon keeps them, after its checks."""
    _check_layout(layout, count, "conv")
    kernel_size = _repeat(kernel_size, count)
    _require(
        len(kernel_size) == count,
        f"kernel_size must be a number or a list of {count} ints",
    )
    if output_padding is None:
        return kernel_size, None
    output_padding = _repeat(output_padding, count)
    _require(
        len(output_padding) == count,
        f"output_padding must be a number or a list of {count} ints",
    )
    return kernel_size, output_padding


class Conv1D(_Conv):
    """1-D convolution over (N, C, W) inputs; weight (channels, in_channels/groups, k)."""

    def __init__(self, channels: int, kernel_size: Any, strides: Any = 1, padding: Any = 0,
                 dilation: Any = 1, groups: int = 1, layout: str = "NCW",
                 activation: str | None = None, use_bias: bool = True,
                 weight_initializer: Any = None, bias_initializer: Any = "zeros",
                 in_channels: int = 0, **kwargs: Any) -> None:
        kernel_size, _ = _conv_args(1, kernel_size, layout)
        super().__init__(channels, kernel_size, strides, padding, dilation, groups, layout,
                         in_channels, activation, use_bias, weight_initializer,
                         bias_initializer, **kwargs)


class Conv2D(_Conv):
    """2-D convolution over (N, C, H, W) inputs (or NHWC); `Conv2D(6, 5)` is LeNet's first."""

    def __init__(self, channels: int, kernel_size: Any, strides: Any = (1, 1),
                 padding: Any = (0, 0), dilation: Any = (1, 1), groups: int = 1,
                 layout: str = "NCHW", activation: str | None = None, use_bias: bool = True,
                 weight_initializer: Any = None, bias_initializer: Any = "zeros",
                 in_channels: int = 0, **kwargs: Any) -> None:
        kernel_size, _ = _conv_args(2, kernel_size, layout)
        super().__init__(channels, kernel_size, strides, padding, dilation, groups, layout,
                         in_channels, activation, use_bias, weight_initializer,
                         bias_initializer, **kwargs)


class Conv3D(_Conv):
    """3-D convolution over (N, C, D, H, W) inputs (or NDHWC)."""

    def __init__(self, channels: int, kernel_size: Any, strides: Any = (1, 1, 1),
                 padding: Any = (0, 0, 0), dilation: Any = (1, 1, 1), groups: int = 1,
                 layout: str = "NCDHW", activation: str | None = None, use_bias: bool = True,
                 weight_initializer: Any = None, bias_initializer: Any = "zeros",
                 in_channels: int = 0, **kwargs: Any) -> None:
        kernel_size, _ = _conv_args(3, kernel_size, layout)
        super().__init__(channels, kernel_size, strides, padding, dilation, groups, layout,
                         in_channels, activation, use_bias, weight_initializer,
                         bias_initializer, **kwargs)


class Conv1DTranspose(_ConvTranspose):
    """1-D transposed convolution (a convolution's gradient): (N, C, W) in, upsampled out."""

    def __init__(self, channels: int, kernel_size: Any, strides: Any = 1, padding: Any = 0,
                 output_padding: Any = 0, dilation: Any = 1, groups: int = 1,
                 layout: str = "NCW", activation: str | None = None, use_bias: bool = True,
                 weight_initializer: Any = None, bias_initializer: Any = "zeros",
                 in_channels: int = 0, **kwargs: Any) -> None:
        kernel_size, adj = _conv_args(1, kernel_size, layout, output_padding)
        super().__init__(channels, kernel_size, strides, padding, dilation, groups, layout,
                         in_channels, activation, use_bias, weight_initializer,
                         bias_initializer, adj=adj, **kwargs)
        self.outpad = adj


class Conv2DTranspose(_ConvTranspose):
    """2-D transposed convolution: (N, C, H, W) in, upsampled by `strides` out."""

    def __init__(self, channels: int, kernel_size: Any, strides: Any = (1, 1),
                 padding: Any = (0, 0), output_padding: Any = (0, 0), dilation: Any = (1, 1),
                 groups: int = 1, layout: str = "NCHW", activation: str | None = None,
                 use_bias: bool = True, weight_initializer: Any = None,
                 bias_initializer: Any = "zeros", in_channels: int = 0, **kwargs: Any) -> None:
        kernel_size, adj = _conv_args(2, kernel_size, layout, output_padding)
        super().__init__(channels, kernel_size, strides, padding, dilation, groups, layout,
                         in_channels, activation, use_bias, weight_initializer,
                         bias_initializer, adj=adj, **kwargs)
        self.outpad = adj


class Conv3DTranspose(_ConvTranspose):
    """3-D transposed convolution: (N, C, D, H, W) in, upsampled by `strides` out."""

    def __init__(self, channels: int, kernel_size: Any, strides: Any = (1, 1, 1),
                 padding: Any = (0, 0, 0), output_padding: Any = (0, 0, 0),
                 dilation: Any = (1, 1, 1), groups: int = 1, layout: str = "NCDHW",
                 activation: str | None = None, use_bias: bool = True,
                 weight_initializer: Any = None, bias_initializer: Any = "zeros",
                 in_channels: int = 0, **kwargs: Any) -> None:
        kernel_size, adj = _conv_args(3, kernel_size, layout, output_padding)
        super().__init__(channels, kernel_size, strides, padding, dilation, groups, layout,
                         in_channels, activation, use_bias, weight_initializer,
                         bias_initializer, adj=adj, **kwargs)
        self.outpad = adj


# ---- pooling ----------------------------------------------------------------------------------
class _Pooling(HybridBlock):
    """What every pooling layer shares: its `nd.Pooling` arguments and Gluon's repr."""

    def __init__(
        self, pool_size: Any, strides: Any, padding: Any, ceil_mode: bool, global_pool: bool,
        pool_type: str, layout: str, count_include_pad: bool | None = None, **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        count = len(pool_size)
        _check_layout(layout, count, "pool")
        strides = pool_size if strides is None else strides
        self._kwargs: dict[str, Any] = {
            "kernel": pool_size, "stride": _repeat(strides, count),
            "pad": _repeat(padding, count), "global_pool": global_pool,
            "pool_type": pool_type, "layout": layout,
            "pooling_convention": "full" if ceil_mode else "valid",
        }
        if count_include_pad is not None:
            self._kwargs["count_include_pad"] = count_include_pad

    def _alias(self) -> str:
        return "pool"

    def hybrid_forward(self, F: Any, x: Any) -> Any:
        _check_rank(type(self).__name__, x, self._kwargs["layout"])
        return F.Pooling(x, **self._kwargs)

    def __repr__(self) -> str:
        k = self._kwargs
        return (
            f"{type(self).__name__}(size={k['kernel']}, stride={k['stride']}, "
            f"padding={k['pad']}, ceil_mode={k['pooling_convention'] == 'full'}, "
            f"global_pool={k['global_pool']}, pool_type={k['pool_type']}, layout={k['layout']})"
        )


def _pool_size(pool_size: Any, count: int) -> Any:
    pool_size = _repeat(pool_size, count)
    _require(len(pool_size) == count, f"pool_size must be a number or a list of {count} ints")
    return pool_size


class MaxPool1D(_Pooling):
    """Maximum over windows of (N, C, W) inputs; the stride defaults to the window."""

    def __init__(self, pool_size: Any = 2, strides: Any = None, padding: Any = 0,
                 layout: str = "NCW", ceil_mode: bool = False, **kwargs: Any) -> None:
        super().__init__(_pool_size(pool_size, 1), strides, padding, ceil_mode, False, "max",
                         layout, **kwargs)


class MaxPool2D(_Pooling):
    """Maximum over windows of (N, C, H, W) inputs; the stride defaults to the window."""

    def __init__(self, pool_size: Any = (2, 2), strides: Any = None, padding: Any = 0,
                 layout: str = "NCHW", ceil_mode: bool = False, **kwargs: Any) -> None:
        super().__init__(_pool_size(pool_size, 2), strides, padding, ceil_mode, False, "max",
                         layout, **kwargs)


class MaxPool3D(_Pooling):
    """Maximum over windows of (N, C, D, H, W) inputs; the stride defaults to the window."""

    def __init__(self, pool_size: Any = (2, 2, 2), strides: Any = None, padding: Any = 0,
                 ceil_mode: bool = False, layout: str = "NCDHW", **kwargs: Any) -> None:
        super().__init__(_pool_size(pool_size, 3), strides, padding, ceil_mode, False, "max",
                         layout, **kwargs)


class AvgPool1D(_Pooling):
    """Mean over windows of (N, C, W) inputs, counting the padding when `count_include_pad`."""

    def __init__(self, pool_size: Any = 2, strides: Any = None, padding: Any = 0,
                 layout: str = "NCW", ceil_mode: bool = False, count_include_pad: bool = True,
                 **kwargs: Any) -> None:
        super().__init__(_pool_size(pool_size, 1), strides, padding, ceil_mode, False, "avg",
                         layout, count_include_pad, **kwargs)


class AvgPool2D(_Pooling):
    """Mean over windows of (N, C, H, W) inputs, counting the padding when `count_include_pad`."""

    def __init__(self, pool_size: Any = (2, 2), strides: Any = None, padding: Any = 0,
                 ceil_mode: bool = False, layout: str = "NCHW", count_include_pad: bool = True,
                 **kwargs: Any) -> None:
        super().__init__(_pool_size(pool_size, 2), strides, padding, ceil_mode, False, "avg",
                         layout, count_include_pad, **kwargs)


class AvgPool3D(_Pooling):
    """Mean over windows of (N, C, D, H, W) inputs, counting the padding when
    `count_include_pad`."""

    def __init__(self, pool_size: Any = (2, 2, 2), strides: Any = None, padding: Any = 0,
                 ceil_mode: bool = False, layout: str = "NCDHW", count_include_pad: bool = True,
                 **kwargs: Any) -> None:
        super().__init__(_pool_size(pool_size, 3), strides, padding, ceil_mode, False, "avg",
                         layout, count_include_pad, **kwargs)


class _GlobalPooling(_Pooling):
    _count = 0
    _type = "max"

    def __init__(self, layout: str | None = None, **kwargs: Any) -> None:
        count = self._count
        layout = layout or f"NC{_SPATIAL_NAMES[count]}"
        super().__init__((1,) * count, None, 0, True, True, self._type, layout, **kwargs)


class GlobalMaxPool1D(_GlobalPooling):
    """The maximum of each channel of (N, C, W) inputs: (N, C, 1)."""

    _count, _type = 1, "max"


class GlobalMaxPool2D(_GlobalPooling):
    """The maximum of each channel of (N, C, H, W) inputs: (N, C, 1, 1)."""

    _count, _type = 2, "max"


class GlobalMaxPool3D(_GlobalPooling):
    """The maximum of each channel of (N, C, D, H, W) inputs: (N, C, 1, 1, 1)."""

    _count, _type = 3, "max"


class GlobalAvgPool1D(_GlobalPooling):
    """The mean of each channel of (N, C, W) inputs: (N, C, 1)."""

    _count, _type = 1, "avg"


class GlobalAvgPool2D(_GlobalPooling):
    """The mean of each channel of (N, C, H, W) inputs: (N, C, 1, 1)."""

    _count, _type = 2, "avg"


class GlobalAvgPool3D(_GlobalPooling):
    """The mean of each channel of (N, C, D, H, W) inputs: (N, C, 1, 1, 1)."""

    _count, _type = 3, "avg"


class ReflectionPad2D(HybridBlock):
    """Pads the H and W axes of (N, C, H, W) inputs by reflection; `padding` is a number or
    the 8 `pad_width` values of `nd.pad`."""

    def __init__(self, padding: Any = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if isinstance(padding, Number):
            padding = (0, 0, 0, 0, padding, padding, padding, padding)
        _require(len(padding) == 8, "")
        self._padding = padding

    def hybrid_forward(self, F: Any, x: Any) -> Any:
        return F.pad(x, mode="reflect", pad_width=self._padding)
