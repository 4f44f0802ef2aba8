"""The model zoo (rpbook.models): shapes, widths, layer order, parameter counts, bad input."""
import math

import pytest
import torch
from torch import nn

from rpbook.models import (
    MLP, MODEL_NAMES, ConvNet, LeNet5, ResNetCIFAR, VGG16, build_model, count_parameters,
)

# every in_shape the book feeds each model; CIFAR-size inputs only where the book uses them
SUPPORTED = {
    "mlp": [(40,), (1, 8, 8), (1, 28, 28), (3, 32, 32)],
    "lenet5": [(1, 8, 8), (1, 28, 28), (3, 32, 32)],
    "convnet": [(1, 8, 8), (1, 28, 28), (3, 32, 32)],
    "resnet20": [(1, 8, 8), (1, 28, 28), (3, 32, 32)],
    "resnet32": [(3, 16, 16)],
    "resnet56": [(3, 8, 8)],
    "vgg16": [(1, 8, 8), (1, 28, 28), (3, 32, 32)],
}
CASES = [(name, shape) for name in MODEL_NAMES for shape in SUPPORTED[name]]


def weight_layers(model):
    return [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def test_every_model_name_has_cases():
    assert set(SUPPORTED) == set(MODEL_NAMES)


@pytest.mark.parametrize("name, in_shape", CASES)
def test_output_shape(name, in_shape):
    torch.manual_seed(0)
    model = build_model(name, in_shape=in_shape, num_classes=7, width=0.25)
    out = model(torch.randn(2, *in_shape))
    assert out.shape == (2, 7)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", ["mlp", "lenet5", "resnet20"])
def test_single_output_for_regression(name):
    shape = (12,) if name == "mlp" else (1, 8, 8)
    model = build_model(name, in_shape=shape, num_classes=1, width=0.25)
    assert model(torch.randn(2, *shape)).shape == (2, 1)


@pytest.mark.parametrize("name, in_shape", CASES)
def test_weight_layers_in_forward_order_and_classifier_last(name, in_shape):
    model = build_model(name, in_shape=in_shape, num_classes=5, width=0.25)
    layers = weight_layers(model)
    called = []
    hooks = [m.register_forward_hook(lambda mod, i, o, n=n: called.append(n)) for n, m in layers]
    model(torch.randn(2, *in_shape))
    for h in hooks:
        h.remove()
    assert called == [n for n, _ in layers]
    last = layers[-1][1]
    assert isinstance(last, nn.Linear) and last.out_features == 5
    # no other kinds of weight layer slip past the masks
    for m in model.modules():
        assert not isinstance(m, (nn.Conv1d, nn.Conv3d, nn.Bilinear, nn.Dropout))


def test_mlp_width_and_depth():
    base = build_model("mlp", in_shape=(40,), num_classes=10)
    wide = build_model("mlp", in_shape=(40,), num_classes=10, width=2)
    assert [m.out_features for _, m in weight_layers(base)] == [300, 100, 10]
    assert [m.out_features for _, m in weight_layers(wide)] == [600, 200, 10]
    deep = build_model("mlp", in_shape=(40,), num_classes=3, depth=3)
    assert [m.out_features for _, m in weight_layers(deep)] == [100, 100, 100, 3]
    custom = build_model("mlp", in_shape=(40,), num_classes=3, hidden=(32, 16), width=0.5)
    assert [m.out_features for _, m in weight_layers(custom)] == [16, 8, 3]


def test_mlp_without_hidden_is_logistic_regression():
    for model in (MLP(40, hidden=(), num_classes=3), build_model("mlp", in_shape=(40,), num_classes=3, depth=0)):
        layers = weight_layers(model)
        assert len(layers) == 1 and layers[0][1].in_features == 40
        assert model(torch.randn(2, 40)).shape == (2, 3)


def test_width_rounds_and_never_reaches_zero():
    # 5 * 0.5 = 2.5 rounds up (not to even); tiny widths keep one unit
    assert [m.out_features for _, m in weight_layers(MLP(4, (5, 3), 2, width=0.5))] == [3, 2, 2]
    assert [m.out_features for _, m in weight_layers(MLP(4, (5, 3), 2, width=1e-3))] == [1, 1, 2]


def test_conv_widths():
    r = build_model("resnet20", in_shape=(3, 32, 32), num_classes=10, width=0.5)
    assert r.conv1.out_channels == 8 and r.fc.in_features == 32
    r2 = build_model("resnet20", in_shape=(3, 32, 32), num_classes=10, width=2)
    assert r2.conv1.out_channels == 32 and r2.fc.in_features == 128
    le = build_model("lenet5", in_shape=(1, 28, 28), num_classes=10, width=2)
    assert [m.out_channels if isinstance(m, nn.Conv2d) else m.out_features
            for _, m in weight_layers(le)] == [12, 32, 240, 168, 10]
    v = build_model("vgg16", in_shape=(3, 32, 32), num_classes=10, width=0.25)
    convs = [m.out_channels for _, m in weight_layers(v)[:-1]]
    assert convs == [16, 16, 32, 32, 64, 64, 64, 128, 128, 128, 128, 128, 128]
    c = build_model("convnet", in_shape=(3, 32, 32), num_classes=10, width=0.5)
    assert [m.out_channels if isinstance(m, nn.Conv2d) else m.out_features
            for _, m in weight_layers(c)] == [32, 32, 64, 64, 128, 128, 10]


@pytest.mark.parametrize("depth, convs", [(2, 2), (4, 4), (6, 6)])
def test_convnet_depth(depth, convs):
    model = build_model("convnet", in_shape=(3, 32, 32), num_classes=10, depth=depth, width=0.125)
    layers = weight_layers(model)
    assert sum(isinstance(m, nn.Conv2d) for _, m in layers) == convs
    assert sum(isinstance(m, nn.Linear) for _, m in layers) == 3
    # 32x32 halves once per block of two convs
    side = 32 // 2 ** (depth // 2)
    assert layers[convs][1].in_features == layers[convs - 1][1].out_channels * side * side


@pytest.mark.parametrize("name, depth", [("resnet20", 20), ("resnet32", 32), ("resnet56", 56)])
def test_resnet_depth_counts_layers(name, depth):
    model = build_model(name, in_shape=(3, 8, 8), num_classes=10, width=0.25)
    layers = weight_layers(model)
    # depth counts the 3x3 convs plus the classifier; the two 1x1 shortcuts come on top
    shortcuts = [n for n, m in layers if isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1)]
    assert len(shortcuts) == 2
    assert len(layers) - len(shortcuts) == depth
    assert ResNetCIFAR((3, 8, 8), 10, depth=44, width=0.25).depth == 44


def test_vgg_pools_skip_on_small_images():
    for shape, flat in [((3, 32, 32), 512), ((1, 8, 8), 512), ((1, 28, 28), 512), ((3, 64, 64), 512 * 4)]:
        assert VGG16(shape, 10).fc.in_features == flat
    assert sum(isinstance(m, nn.MaxPool2d) for m in VGG16((1, 8, 8), 10, width=0.1).modules()) == 3
    assert sum(isinstance(m, nn.MaxPool2d) for m in VGG16((3, 32, 32), 10, width=0.1).modules()) == 5


def test_parameter_counts():
    # LeNet-300-100: (784*300 + 300) + (300*100 + 100) + (100*10 + 10) = 235,500 + 30,100 + 1,010
    assert count_parameters(build_model("mlp", in_shape=(1, 28, 28), num_classes=10)) == 266_610
    # LeNet-5 on 28x28 with padding 2 on both convs: 28 -> pool 14 -> pool 7, so fc1 sees 16*7*7 = 784.
    # conv1 1*6*25 + 6 = 156; conv2 6*16*25 + 16 = 2,416; fc1 784*120 + 120 = 94,200;
    # fc2 120*84 + 84 = 10,164; fc3 84*10 + 10 = 850; total 107,786
    assert count_parameters(build_model("lenet5", in_shape=(1, 28, 28), num_classes=10)) == 107_786
    # ResNet-20: 269,722 with He et al.'s parameter-free zero-padding shortcuts ("option A").
    # The two 1x1 conv + BN shortcuts here ("option B") add 16*32 + 2*32 = 576 and 32*64 + 2*64 = 2,176.
    assert count_parameters(build_model("resnet20", in_shape=(3, 32, 32), num_classes=10)) == 272_474
    assert count_parameters(build_model("resnet32", in_shape=(3, 32, 32), num_classes=10)) == 466_906
    assert count_parameters(build_model("resnet56", in_shape=(3, 32, 32), num_classes=10)) == 855_770
    # VGG-16-BN without conv biases (BatchNorm cancels them): 14,728,266 - 4,224 biases
    assert count_parameters(build_model("vgg16", in_shape=(3, 32, 32), num_classes=10)) == 14_724_042
    # Conv-4 on CIFAR: about 2.4M, as in Frankle & Carbin
    assert count_parameters(build_model("convnet", in_shape=(3, 32, 32), num_classes=10)) == 2_425_930


def test_count_parameters_skips_frozen():
    model = MLP(4, (3,), 2)
    model.fc1.weight.requires_grad_(False)
    assert count_parameters(model) == 3 + 3 * 2 + 2


def test_deterministic_under_seed():
    torch.manual_seed(1)
    a = build_model("lenet5", in_shape=(1, 8, 8), num_classes=10)
    torch.manual_seed(1)
    b = build_model("lenet5", in_shape=(1, 8, 8), num_classes=10)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)


# ----------------------------------------------------------------------------- bad input


def test_unknown_name():
    with pytest.raises(ValueError, match=r"unknown model 'foo'; allowed: mlp, lenet5, convnet, resnet20"):
        build_model("foo", in_shape=(40,), num_classes=10)


@pytest.mark.parametrize("width, shown", [(0, "0"), (-1, "-1"), (math.nan, "nan"), ("abc", "'abc'"),
                                          (math.inf, "inf"), (True, "True"), (None, "None")])
@pytest.mark.parametrize("name", ["mlp", "lenet5"])
def test_bad_width(name, width, shown):
    shape = (40,) if name == "mlp" else (1, 8, 8)
    with pytest.raises(ValueError, match="width") as err:
        build_model(name, in_shape=shape, num_classes=10, width=width)
    assert shown in str(err.value)


@pytest.mark.parametrize("cls", [LeNet5, ConvNet, VGG16])
def test_bad_width_in_classes(cls):
    with pytest.raises(ValueError, match="-0.5"):
        cls((1, 8, 8), 10, width=-0.5)


@pytest.mark.parametrize("name", ["lenet5", "convnet", "resnet20", "vgg16"])
def test_image_models_reject_vectors(name):
    with pytest.raises(ValueError, match=r"image input \(C, H, W\).*\(40,\).*'mlp'"):
        build_model(name, in_shape=(40,), num_classes=10)


def test_lenet_message():
    with pytest.raises(ValueError, match=r"LeNet-5 needs image input"):
        LeNet5((64,), 10)


def test_convnet_bad_depth():
    with pytest.raises(ValueError, match=r"2, 4, 6, got 3"):
        build_model("convnet", in_shape=(1, 8, 8), num_classes=10, depth=3)
    with pytest.raises(ValueError, match=r"got 4.0"):
        ConvNet((1, 8, 8), 10, depth=4.0)


@pytest.mark.parametrize("depth", [21, 2, 0, -4, 20.0])
def test_resnet_bad_depth(depth):
    with pytest.raises(ValueError, match=rf"6n \+ 2.*got {depth!r}"):
        ResNetCIFAR((3, 8, 8), 10, depth=depth)


def test_resnet_name_fixes_depth():
    with pytest.raises(ValueError, match="depth=44"):
        build_model("resnet20", in_shape=(3, 8, 8), num_classes=10, depth=44)
    # repeating the name's own depth is harmless
    build_model("resnet20", in_shape=(3, 8, 8), num_classes=10, depth=20, width=0.25)


@pytest.mark.parametrize("num_classes", [0, -1, 2.5, "10", True])
def test_bad_num_classes(num_classes):
    with pytest.raises(ValueError, match=rf"num_classes.*{num_classes!r}"):
        build_model("mlp", in_shape=(4,), num_classes=num_classes)


@pytest.mark.parametrize("in_shape", [(), (0,), (1, -8, 8), "40", 40, (2.5,)])
def test_bad_in_shape(in_shape):
    with pytest.raises(ValueError, match="in_shape"):
        build_model("mlp", in_shape=in_shape, num_classes=3)


def test_bad_hidden_and_depth():
    with pytest.raises(ValueError, match=r"hidden.*\(0, 5\)"):
        build_model("mlp", in_shape=(4,), num_classes=3, hidden=(0, 5))
    with pytest.raises(ValueError, match="-1"):
        build_model("mlp", in_shape=(4,), num_classes=3, depth=-1)
    with pytest.raises(ValueError, match="disagree"):
        build_model("mlp", in_shape=(4,), num_classes=3, hidden=(5,), depth=2)
    # knobs a model does not have are refused rather than silently ignored
    with pytest.raises(ValueError, match=r"hidden=\(5,\) only applies to 'mlp'"):
        build_model("lenet5", in_shape=(1, 8, 8), num_classes=3, hidden=(5,))
    with pytest.raises(ValueError, match="depth=3 does not apply to 'vgg16'"):
        build_model("vgg16", in_shape=(1, 8, 8), num_classes=3, depth=3)
