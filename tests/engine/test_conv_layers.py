"""Conv, pool, activation, normalization and lambda layers as a Gluon user builds them:
deferred channels, names, argument errors, layouts, saving, and a LeNet that learns.
(Numbers against MXNet are in test_oracle_layers.py.)"""

import numpy as np
import pytest

from paramstore import EngineError, autograd, gluon, init, nd
from paramstore.gluon import nn

pytestmark = pytest.mark.usefixtures("fresh_names")

rng = np.random.default_rng(7)


def lenet():
    net = nn.HybridSequential()
    with net.name_scope():
        net.add(
            nn.Conv2D(6, 5, activation="relu"), nn.MaxPool2D(),
            nn.Conv2D(16, 5, activation="relu"), nn.MaxPool2D(),
            nn.Dense(120, activation="relu"), nn.Dense(84, activation="relu"), nn.Dense(10),
        )
    return net


def test_conv_infers_in_channels_at_the_first_forward():
    conv = nn.Conv2D(6, 5)
    assert conv.weight.shape == (6, 0, 5, 5)
    conv.initialize()
    assert conv(nd.ones((2, 3, 9, 9))).shape == (2, 6, 5, 5)
    assert conv.weight.shape == (6, 3, 5, 5)
    assert repr(conv) == "Conv2D(3 -> 6, kernel_size=(5, 5), stride=(1, 1))"


def test_lenet_parameter_names_and_shapes_are_gluons():
    net = lenet()
    net.initialize()
    net(nd.ones((1, 1, 28, 28)))
    shapes = {name: p.shape for name, p in net.collect_params().items()}
    assert list(shapes)[:4] == [
        "hybridsequential0_conv0_weight", "hybridsequential0_conv0_bias",
        "hybridsequential0_conv1_weight", "hybridsequential0_conv1_bias",
    ]
    assert shapes["hybridsequential0_conv1_weight"] == (16, 6, 5, 5)
    assert shapes["hybridsequential0_dense0_weight"] == (120, 256)


def test_lenet_learns_a_fixed_batch():
    net = lenet()
    net.initialize(init.Xavier())
    x = nd.array(rng.standard_normal((16, 1, 28, 28)))
    y = nd.array(rng.integers(0, 10, 16))
    loss = gluon.loss.SoftmaxCrossEntropyLoss()
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.1})
    losses = []
    for _ in range(15):
        with autograd.record():
            value = loss(net(x), y)
        value.backward()
        trainer.step(16)
        losses.append(float(value.mean().asscalar()))
    assert losses[-1] < 0.5 * losses[0]


def test_conv_net_parameters_survive_a_save_and_load(tmp_path):
    net = lenet()
    net.initialize()
    x = nd.array(rng.standard_normal((2, 1, 28, 28)))
    before = net(x).asnumpy()
    net.save_parameters(str(tmp_path / "lenet.safetensors"))
    other = lenet()
    other.load_parameters(str(tmp_path / "lenet.safetensors"))
    np.testing.assert_array_equal(other(x).asnumpy(), before)


@pytest.mark.parametrize("make, message", [
    (lambda: nn.Conv2D(4, (3, 3, 3)), "kernel_size must be a number or a list of 2 ints"),
    (lambda: nn.Conv1D(4, 3, layout="NWC"), "Only supports 'NCW' layout for now"),
    (lambda: nn.Conv3D(4, 3, layout="NCHW"), "Only supports 'NCDHW' and 'NDHWC' layout"),
    (lambda: nn.Conv2DTranspose(4, 3, output_padding=(1, 1, 1)),
     "output_padding must be a number or a list of 2 ints"),
    (lambda: nn.MaxPool2D((2, 2, 2)), "pool_size must be a number or a list of 2 ints"),
    (lambda: nn.AvgPool1D(layout="NCHW"), "Only NCW and NWC layouts are valid for 1D Pooling"),
])
def test_bad_layer_arguments_fail_as_in_gluon(make, message):
    with pytest.raises(AssertionError, match=message):
        make()


def test_conv_with_declared_channels_refuses_other_channels_and_changes_nothing():
    conv = nn.Conv2D(4, 3, in_channels=2)
    conv.initialize()
    weight = conv.weight.data().asnumpy().copy()
    with pytest.raises(EngineError, match="does not fit 3 input channels"):
        conv(nd.ones((1, 3, 5, 5)))
    np.testing.assert_array_equal(conv.weight.data().asnumpy(), weight)


@pytest.mark.parametrize("block, shape, message", [
    (nn.Conv2D(4, 5, in_channels=1), (1, 1, 3, 3), "larger than the padded input"),
    (nn.Conv2D(4, 3, in_channels=1), (1, 1, 5), "should be 4D in layout NCHW"),
    (nn.Conv3DTranspose(2, 2, in_channels=1), (1, 1, 2, 2), "should be 5D"),
    (nn.MaxPool2D(3), (1, 1, 2, 2), "larger than the padded input"),
    (nn.GlobalAvgPool3D(), (1, 2, 3, 4), "should be 5D"),
    (nn.ReflectionPad2D(3), (1, 1, 3, 3), "must be smaller than the shape"),
])
def test_bad_inputs_raise_the_engines_error(block, shape, message):
    block.initialize()
    with pytest.raises(EngineError, match=message):
        block(nd.ones(shape))


@pytest.mark.parametrize("first, last, shape", [
    (nn.Conv2D(3, (2, 3), strides=2, padding=1, in_channels=2),
     nn.Conv2D(3, (2, 3), strides=2, padding=1, in_channels=2, layout="NHWC"), (2, 2, 5, 6)),
    (nn.Conv3D(2, 2, in_channels=2), nn.Conv3D(2, 2, in_channels=2, layout="NDHWC"),
     (1, 2, 3, 4, 3)),
    (nn.Conv2DTranspose(3, 3, strides=2, in_channels=2),
     nn.Conv2DTranspose(3, 3, strides=2, in_channels=2, layout="NHWC"), (1, 2, 3, 4)),
    (nn.AvgPool2D(3, 1, 1), nn.AvgPool2D(3, 1, 1, layout="NHWC"), (2, 3, 4, 5)),
    (nn.GlobalMaxPool1D(), nn.GlobalMaxPool1D(layout="NWC"), (2, 3, 4)),
])
def test_channels_last_layout_computes_the_channels_first_result(first, last, shape):
    x = rng.standard_normal(shape)
    first.initialize()
    last.initialize()
    if hasattr(first, "weight"):
        weight = first.weight.data().asnumpy()
        last.weight.set_data(nd.array(np.moveaxis(weight, 1, -1)))
    to_last = (0,) + tuple(range(2, len(shape))) + (1,)
    expected = np.moveaxis(first(nd.array(x)).asnumpy(), 1, -1)
    np.testing.assert_allclose(last(nd.array(x.transpose(to_last))).asnumpy(), expected,
                               rtol=1e-5, atol=1e-6)


def test_conv_transpose_undoes_the_shape_change_of_its_convolution():
    conv = nn.Conv2D(4, 3, strides=2, padding=1, in_channels=2)
    up = nn.Conv2DTranspose(2, 3, strides=2, padding=1, output_padding=1, in_channels=4)
    conv.initialize()
    up.initialize()
    assert up(conv(nd.ones((1, 2, 8, 8)))).shape == (1, 2, 8, 8)


def test_prelu_starts_at_a_quarter_and_learns_its_slope():
    prelu = nn.PReLU()
    prelu.initialize()
    assert prelu.alpha.data().asnumpy().tolist() == [0.25]
    x = nd.array([[-2.0, 3.0]])
    with autograd.record():
        y = prelu(x)
    y.backward()
    assert y.asnumpy().tolist() == [[-0.5, 3.0]]
    assert prelu.alpha.grad().asnumpy().tolist() == [-2.0]


def test_prelu_takes_an_alpha_initializer():
    prelu = nn.PReLU(alpha_initializer=init.Constant(0.1), in_channels=3)
    prelu.initialize()
    assert prelu.alpha.data().asnumpy().tolist() == pytest.approx([0.1] * 3)


def test_instance_norm_infers_its_channels():
    norm = nn.InstanceNorm()
    norm.initialize()
    out = norm(nd.array(rng.standard_normal((2, 3, 8))))
    assert norm.gamma.shape == (3,)
    np.testing.assert_allclose(out.asnumpy().mean(axis=2), 0, atol=1e-6)


def test_group_norm_refuses_channels_that_do_not_split_into_its_groups():
    norm = nn.GroupNorm(2)
    norm.initialize()
    with pytest.raises(EngineError, match="cannot form 2 groups"):
        norm(nd.ones((1, 3, 4)))


def test_lambda_runs_a_function_of_several_inputs():
    block = nn.Lambda(lambda a, b: a * b)
    assert block(nd.array([2.0]), nd.array([3.0])).asnumpy().tolist() == [6.0]
    assert repr(block) == "Lambda(<lambda>)"


def test_hybrid_lambda_gets_the_nd_module_as_f():
    def scaled_relu(F, x):
        return F.relu(x) * 2

    block = nn.HybridLambda(scaled_relu)
    assert block(nd.array([-1.0, 2.0])).asnumpy().tolist() == [0.0, 4.0]
    assert repr(block) == "HybridLambda(scaled_relu)"


def test_lambda_names_an_unknown_operator():
    with pytest.raises(AssertionError, match="Function name no_such_op is not found in ndarray."):
        nn.Lambda("no_such_op")
    with pytest.raises(ValueError, match="Unrecognized function in lambda: 3"):
        nn.HybridLambda(3)


def test_deconvolution_target_shape_chooses_padding_and_adj_as_mxnet_does():
    x = nd.array(np.arange(120).reshape(1, 6, 4, 5) / 10)
    w = nd.array(np.arange(108).reshape(6, 2, 3, 3) / 50)
    kwargs = {"kernel": (3, 3), "stride": (2, 2), "num_filter": 2, "no_bias": True}
    y = nd.Deconvolution(x, w, target_shape=(8, 9), **kwargs)
    explicit = nd.Deconvolution(x, w, pad=(1, 1), adj=(1, 0), **kwargs)
    np.testing.assert_array_equal(y.asnumpy(), explicit.asnumpy())
    # MXNet 1.9.1 (its own kernels: MXNET_MKLDNN_ENABLED=0) gives this shape and these sums.
    assert y.shape == (1, 2, 8, 9)
    assert float(y.sum().asscalar()) == pytest.approx(14701.3203125, rel=1e-6)
    assert float((y * y).sum().asscalar()) == pytest.approx(1884177.25, rel=1e-6)


@pytest.mark.parametrize("kwargs, message", [
    ({"kernel": (0, 3)}, r"kernel must be at least 1 on every axis, got \(0, 3\)"),
    ({"kernel": (3, 3), "stride": 0}, r"stride must be at least 1"),
    ({"kernel": (3, 3), "pad": (-1, 0)}, r"pad must be at least 0"),
    ({"kernel": (3, 3), "dilate": (1, 1, 1)}, r"dilate must have 2 values"),
])
def test_convolution_refuses_impossible_window_arguments(kwargs, message):
    with pytest.raises(EngineError, match=message):
        nd.Convolution(nd.ones((1, 1, 5, 5)), nd.ones((1, 1, 3, 3)), num_filter=1, **kwargs)


def test_conv_activation_is_fused_unless_a_hook_watches_it():
    conv = nn.Conv2D(3, 2, activation="sigmoid", in_channels=2)
    conv.initialize()
    x = nd.array(rng.standard_normal((1, 2, 4, 4)))
    fused = conv(x).asnumpy()
    seen = []
    conv.act.register_forward_hook(lambda block, inputs, out: seen.append(out.shape))
    np.testing.assert_allclose(conv(x).asnumpy(), fused, rtol=1e-6)
    assert seen == [(1, 3, 3, 3)]
