"""helpers.resnet: the ResNet family, checked against torchvision and against hand computation."""

from __future__ import annotations

from urllib.error import URLError

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from helpers import resnet as R

SEEDS = [0, 1]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # These networks see one or two tiny images at a time: a second OpenMP thread only adds
    # synchronisation (and spins badly when other processes share the cores).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _tv(num_layers: int, **kwargs) -> nn.Module:
    return getattr(torchvision.models, f"resnet{num_layers}")(weights=None, **kwargs)


# --- architecture: every SageMaker num_layers ---------------------------------------------------


@pytest.mark.parametrize(
    "num_layers, block, layers",
    [(18, "basic", (2, 2, 2, 2)), (34, "basic", (3, 4, 6, 3)), (50, "bottleneck", (3, 4, 6, 3)),
     (101, "bottleneck", (3, 4, 23, 3)), (152, "bottleneck", (3, 8, 36, 3)), (200, "bottleneck", (3, 24, 36, 3))],
)
def test_imagenet_depths_have_four_stages_and_map_images_to_logits(num_layers, block, layers):
    arch = R.architecture(num_layers, (3, 64, 64))
    assert (arch["style"], arch["block"], arch["layers"]) == ("imagenet", block, layers)
    # the depth counts every convolution on the main path plus the classifier
    convs_per_block = 2 if block == "basic" else 3
    assert 1 + convs_per_block * sum(layers) + 1 == num_layers
    # the deep ones are checked for shapes on the meta device (no memory, no arithmetic)
    device = torch.device("cpu" if num_layers <= 50 else "meta")
    with device:
        model = R.resnet(num_layers, 7, (3, 32, 32)).eval()
        x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        maps = model.features(x)
        logits = model(x)
    expansion = 1 if block == "basic" else 4
    assert [m.shape[1] for m in maps] == [w * expansion for w in (64, 128, 256, 512)] == model.stage_channels
    assert [tuple(m.shape[-2:]) for m in maps] == [(8, 8), (4, 4), (2, 2), (1, 1)]
    assert model.stage_strides == [4, 8, 16, 32]
    assert logits.shape == (1, 7)


@pytest.mark.parametrize("num_layers", [8, 20, 32, 44, 56, 110, 164])
def test_cifar_depths_have_three_stages_of_6n_plus_2_layers(num_layers):
    arch = R.architecture(num_layers, (3, 32, 32))
    assert arch["style"] == "cifar"
    model = R.resnet(num_layers, 10, (3, 32, 32)).eval()
    blocks = sum(len(stage) for stage in model.stages())
    if num_layers < 164:
        assert arch["block"] == "basic" and 2 * blocks + 2 == num_layers
    else:
        assert arch["block"] == "bottleneck" and 3 * blocks + 2 == num_layers
    with torch.no_grad():
        maps = model.features(torch.rand(2, 3, 32, 32))
        logits = model(torch.rand(2, 3, 32, 32))
    assert [tuple(m.shape[-2:]) for m in maps] == [(32, 32), (16, 16), (8, 8)]
    assert model.stage_strides == [1, 2, 4]
    assert logits.shape == (2, 10)


def _cifar_basic_parameter_count(num_layers: int, num_classes: int, in_channels: int = 3) -> int:
    # by hand: 3x3 convolutions without bias, BN = 2 parameters per channel, 1x1 projection + BN where
    # the width changes, and the linear classifier
    n = (num_layers - 2) // 6
    count = 9 * in_channels * 16 + 2 * 16
    previous = 16
    for width in (16, 32, 64):
        for i in range(n):
            count += 9 * previous * width + 2 * width + 9 * width * width + 2 * width
            if i == 0 and previous != width:
                count += previous * width + 2 * width
            previous = width
    return count + 64 * num_classes + num_classes


@pytest.mark.parametrize("num_layers", [20, 32, 44, 56, 110])
def test_cifar_parameter_counts_match_a_hand_count(num_layers):
    assert R.count_parameters(R.resnet(num_layers, 10, (3, 32, 32))) == _cifar_basic_parameter_count(num_layers, 10)


@pytest.mark.parametrize("num_layers", [18, 34, 50, 101, 152])
def test_parameter_counts_equal_torchvision(num_layers):
    with torch.device("meta"):  # shapes only: no memory, no initialisation cost
        assert R.count_parameters(R.resnet(num_layers)) == R.count_parameters(_tv(num_layers))


def test_depths_in_both_families_follow_sagemakers_image_height_rule():
    assert R.architecture(50, (3, 28, 28))["style"] == "cifar"
    assert R.architecture(50, (3, 32, 32))["style"] == "imagenet"
    assert R.architecture(50, (3, 224, 224), style="cifar")["layers"] == (8, 8, 8)
    assert R.architecture(20, "3,224,224")["style"] == "cifar"


# --- the torchvision oracle ---------------------------------------------------------------------


@pytest.mark.parametrize("num_layers", [18, 50])
@pytest.mark.parametrize("seed", SEEDS)
def test_torchvision_weights_load_and_give_identical_outputs(num_layers, seed):
    torch.manual_seed(seed)
    reference = _tv(num_layers)
    ours = R.resnet(num_layers)
    result = ours.load_state_dict(reference.state_dict())
    assert not result.missing_keys and not result.unexpected_keys
    x = torch.randn(2, 3, 32, 48)
    reference.eval(), ours.eval()
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x), rtol=0, atol=0)
    # training mode too (batch statistics), and the gradients agree
    reference.train(), ours.train()
    target = torch.randint(0, 1000, (2,))
    F.cross_entropy(ours(x), target).backward()
    F.cross_entropy(reference(x), target).backward()
    torch.testing.assert_close(ours.conv1.weight.grad, reference.conv1.weight.grad)
    torch.testing.assert_close(ours.layer3[0].conv2.weight.grad, reference.layer3[0].conv2.weight.grad)


def test_dilated_stages_match_torchvision_and_keep_resolution():
    torch.manual_seed(0)
    reference = _tv(50, replace_stride_with_dilation=[False, True, True]).eval()
    ours = R.resnet(50, replace_stride_with_dilation=[False, True, True]).eval()
    ours.load_state_dict(reference.state_dict())
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x), rtol=0, atol=0)
        maps = ours.features(x)
    assert ours.stage_strides == [4, 8, 8, 8]
    assert [m.shape[-1] for m in maps] == [8, 4, 4, 4]


def test_basic_blocks_can_be_dilated_too():
    model = R.resnet(18, 10, (3, 32, 32), replace_stride_with_dilation=(False, False, True)).eval()
    with torch.no_grad():
        maps = model.features(torch.rand(1, 3, 32, 32))
    assert model.stage_strides == [4, 8, 16, 16] and maps[-1].shape[-1] == 2


# --- the blocks, by hand -------------------------------------------------------------------------


def _bn_eval(x, bn):
    return (x - bn.running_mean[None, :, None, None]) / torch.sqrt(bn.running_var[None, :, None, None] + bn.eps) * bn.weight[None, :, None, None] + bn.bias[None, :, None, None]


def _randomise_bn(module, generator):
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=generator))
            m.running_var.copy_(torch.rand(m.num_features, generator=generator) + 0.5)
            m.weight.data.copy_(torch.randn(m.num_features, generator=generator))
            m.bias.data.copy_(torch.randn(m.num_features, generator=generator))


@pytest.mark.parametrize("seed", SEEDS)
def test_basic_block_is_relu_of_input_plus_two_convolutions(seed):
    g = torch.Generator().manual_seed(seed)
    block = R.BasicBlock(8, 8).eval()
    _randomise_bn(block, g)
    x = torch.randn(2, 8, 6, 6, generator=g)
    branch = F.relu(_bn_eval(F.conv2d(x, block.conv1.weight, padding=1), block.bn1))
    branch = _bn_eval(F.conv2d(branch, block.conv2.weight, padding=1), block.bn2)
    with torch.no_grad():
        torch.testing.assert_close(block(x), F.relu(x + branch))


@pytest.mark.parametrize("seed", SEEDS)
def test_bottleneck_strides_its_3x3_and_projects_the_shortcut(seed):
    g = torch.Generator().manual_seed(seed)
    block = R.Bottleneck(16, 8, stride=2).eval()
    _randomise_bn(block, g)
    x = torch.randn(2, 16, 8, 8, generator=g)
    branch = F.relu(_bn_eval(F.conv2d(x, block.conv1.weight), block.bn1))
    branch = F.relu(_bn_eval(F.conv2d(branch, block.conv2.weight, stride=2, padding=1), block.bn2))
    branch = _bn_eval(F.conv2d(branch, block.conv3.weight), block.bn3)
    shortcut = _bn_eval(F.conv2d(x, block.downsample[0].weight, stride=2), block.downsample[1])
    with torch.no_grad():
        out = block(x)
    assert out.shape == (2, 32, 4, 4)
    torch.testing.assert_close(out, F.relu(shortcut + branch))


def test_zero_init_residual_makes_every_identity_block_the_identity_on_nonnegative_input():
    model = R.resnet(20, 10, (3, 16, 16), zero_init_residual=True).eval()
    block = model.layer1[1]
    x = torch.rand(2, 16, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(block(x), x)


# --- backbone, classifier, freezing -------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_backbone_with_unit_standardisation_plus_new_head_equals_torchvision(seed):
    torch.manual_seed(seed)
    reference = _tv(18).eval()
    network = R.resnet(18)
    network.load_state_dict(reference.state_dict())
    backbone = R.ResNetBackbone(network, mean=(0, 0, 0), std=(1, 1, 1))
    classifier = R.ImageClassifier(backbone, 1000).eval()
    classifier.fc.load_state_dict(reference.fc.state_dict())
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(classifier(x), reference(x))
        maps = backbone.features(x)
    assert [m.shape[1] for m in maps] == backbone.out_channels == [64, 128, 256, 512]
    assert backbone.strides == [4, 8, 16, 32]
    assert "fc.weight" not in backbone.state_dict() and "layer4.1.conv2.weight" in backbone.state_dict()


def test_backbone_standardises_its_input_with_its_mean_and_std():
    network = R.resnet(20, 10, (3, 16, 16)).eval()
    backbone = R.ResNetBackbone(network, mean=(0.1, 0.2, 0.3), std=(0.5, 0.25, 2.0)).eval()
    x = torch.rand(2, 3, 16, 16)
    expected = network.features((x - torch.tensor([0.1, 0.2, 0.3])[:, None, None]) / torch.tensor([0.5, 0.25, 2.0])[:, None, None])
    with torch.no_grad():
        for ours, theirs in zip(backbone.features(x), expected):
            torch.testing.assert_close(ours, theirs)
    with pytest.raises(ValueError, match=r"x: expected images \(N, 3, H, W\)"):
        backbone(torch.rand(2, 1, 16, 16))
    with pytest.raises(ValueError, match="mean, std"):
        R.ResNetBackbone(network, mean=(0.5,), std=(0.25,))


def test_resnet_backbone_builds_one_channel_cifar_style_networks():
    backbone = R.resnet_backbone(20, (1, 8, 8)).eval()
    with torch.no_grad():
        maps = backbone.features(torch.rand(4, 1, 8, 8))
    assert [tuple(m.shape) for m in maps] == [(4, 16, 8, 8), (4, 32, 4, 4), (4, 64, 2, 2)]


def test_freeze_stops_gradients_and_batchnorm_statistics_of_matching_layers_only():
    torch.manual_seed(0)
    model = R.ImageClassifier(R.resnet_backbone(8, (3, 16, 16)), 10)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.eval()
    x = torch.rand(8, 3, 16, 16)
    with torch.no_grad():
        reference = model(x)
    frozen = R.freeze(model, r"backbone\.")
    assert frozen and all(name.startswith("backbone.") for name in frozen)
    assert R.count_parameters(model, trainable_only=True) == 64 * 10 + 10
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference)  # freezing changes nothing in eval mode
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    model.train()
    F.cross_entropy(model(x), torch.arange(8)).backward()
    optimizer.step()
    after = model.state_dict()
    for key, value in before.items():
        if key.startswith("backbone.") and "num_batches_tracked" not in key:
            torch.testing.assert_close(after[key], value, msg=key)
    assert not torch.equal(after["fc.weight"], before["fc.weight"])


def test_freeze_rejects_a_bad_pattern():
    with pytest.raises(ValueError, match="pattern: expected a regular expression"):
        R.freeze(nn.Linear(2, 2), "(")


# --- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "image_shape, error, message",
    [
        ("3,224", ValueError, "three positive integers"),
        ("3,a,224", ValueError, "channels,height,width"),
        ((3, 0, 32), ValueError, "three positive integers"),
        ((3, 32.0, 32), TypeError, "three integers"),
        (224, TypeError, "C,H,W"),
    ],
)
def test_bad_image_shapes_are_rejected_by_name(image_shape, error, message):
    with pytest.raises(error, match=f"image_shape: .*{message}"):
        R.resnet(18, 10, image_shape)


def test_images_too_small_for_imagenet_style_say_what_to_do():
    with pytest.raises(ValueError, match=r"image_shape: .*needs height and width >= 32.*CIFAR-style"):
        R.resnet(18, 10, (1, 8, 8))
    with pytest.raises(ValueError, match=r"image_shape: .*>= 4"):
        R.resnet(20, 10, (1, 2, 2))


@pytest.mark.parametrize("num_classes, error", [(1, ValueError), (0, ValueError), (-3, ValueError), (2.0, TypeError), (True, TypeError), ("10", TypeError)])
def test_bad_num_classes_are_rejected_by_name(num_classes, error):
    with pytest.raises(error, match="num_classes: expected an integer >= 2"):
        R.resnet(20, num_classes, (3, 32, 32))
    with pytest.raises(error, match="num_classes"):
        R.ImageClassifier(R.resnet_backbone(8, (3, 16, 16)), num_classes)


@pytest.mark.parametrize("num_layers, error", [(19, ValueError), (0, ValueError), (12, ValueError), ("18", TypeError), (18.0, TypeError)])
def test_bad_num_layers_are_rejected_by_name(num_layers, error):
    with pytest.raises(error, match="num_layers"):
        R.resnet(num_layers, 10)


def test_a_style_a_depth_lacks_is_rejected():
    with pytest.raises(ValueError, match="num_layers: 20 has no ImageNet-style"):
        R.architecture(20, (3, 64, 64), style="imagenet")
    with pytest.raises(ValueError, match="num_layers: 18 has no CIFAR-style"):
        R.architecture(18, (3, 64, 64), style="cifar")
    with pytest.raises(ValueError, match="style"):
        R.architecture(18, (3, 64, 64), style="vgg")


# --- torchvision's ImageNet weights, offline ----------------------------------------------------


def test_torchvision_weights_offline_fail_with_what_to_download_and_the_fallback(monkeypatch):
    def offline(*args, **kwargs):
        raise URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(ConnectionError, match=r"resnet18-f37072fd\.pth.*checkpoints.*pretrained_digit_backbone"):
        R.torchvision_backbone(18, "IMAGENET1K_V1", progress=False)


def test_torchvision_weights_load_into_our_backbone_with_imagenet_standardisation(monkeypatch):
    torch.manual_seed(0)
    reference = _tv(18).eval()
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", lambda *a, **k: reference.state_dict())
    backbone = R.torchvision_backbone(18, "IMAGENET1K_V1", progress=False).eval()
    x = torch.rand(2, 3, 32, 32)
    mean = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
    std = torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    body = nn.Sequential(*list(reference.children())[:-2])
    with torch.no_grad():
        torch.testing.assert_close(backbone(x), body((x - mean) / std))


def test_torchvision_weights_reject_unknown_names():
    with pytest.raises(ValueError, match="weights: expected one of"):
        R.torchvision_backbone(18, "IMAGENET22K")
    with pytest.raises(ValueError, match="num_layers"):
        R.torchvision_backbone(20)


# --- batched augmentation against torchvision's per-image functionals and colorsys ---------------


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("mode", ["constant", "reflect"])
def test_shift_images_equals_v2_crop_of_the_padded_image(seed, mode):
    from torchvision.transforms.v2 import functional as TF

    g = torch.Generator().manual_seed(seed)
    images = torch.rand(4, 3, 10, 12, generator=g)
    offsets = torch.randint(0, 7, (4, 2), generator=g)
    out = R.shift_images(images, offsets, 3, mode)
    for i in range(4):
        padded = TF.pad(images[i], [3], padding_mode="constant" if mode == "constant" else "reflect")
        expected = TF.crop(padded, int(offsets[i, 1]), int(offsets[i, 0]), 10, 12)
        torch.testing.assert_close(out[i], expected, rtol=0, atol=0)


@pytest.mark.parametrize("degrees", [17.0, -8.0])
def test_affine_images_rotation_equals_v2_affine(degrees):
    from torchvision.transforms.v2 import InterpolationMode
    from torchvision.transforms.v2 import functional as TF

    images = torch.rand(3, 3, 12, 12, generator=torch.Generator().manual_seed(0))
    a = torch.tensor(degrees).deg2rad()
    rotation = torch.stack([torch.stack([a.cos(), -a.sin()]), torch.stack([a.sin(), a.cos()])])
    out = R.affine_images(images, rotation.expand(3, 2, 2))
    expected = TF.affine(images, angle=degrees, translate=[0, 0], scale=1.0, shear=[0.0, 0.0], interpolation=InterpolationMode.BILINEAR)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-5)


def test_affine_images_quarter_turn_is_rot90_and_identity_is_identity():
    images = torch.rand(2, 1, 8, 8)
    quarter = torch.tensor([[0.0, -1.0], [1.0, 0.0]]).expand(2, 2, 2)
    torch.testing.assert_close(R.affine_images(images, quarter), torch.rot90(images, -1, (2, 3)), rtol=0, atol=1e-5)
    torch.testing.assert_close(R.affine_images(images, torch.eye(2).expand(2, 2, 2)), images, rtol=0, atol=1e-6)


@pytest.mark.parametrize("seed", SEEDS)
def test_rgb_to_hls_matches_colorsys_and_round_trips(seed):
    import colorsys

    g = torch.Generator().manual_seed(seed)
    pixels = torch.rand(1, 3, 1, 50, generator=g)
    pixels[0, :, 0, :3] = torch.tensor([[0.5, 0.0, 1.0], [0.5, 0.0, 1.0], [0.5, 0.0, 1.0]])  # greys: no hue
    hls = R.rgb_to_hls(pixels)
    expected = torch.tensor([colorsys.rgb_to_hls(*pixels[0, :, 0, j].tolist()) for j in range(50)]).T
    torch.testing.assert_close(hls[0, :, 0], expected, rtol=0, atol=1e-5)
    torch.testing.assert_close(R.hls_to_rgb(hls), pixels, rtol=0, atol=1e-5)


def test_adjust_hls_shifts_hue_like_v2_adjust_hue_on_fully_saturated_colours():
    from torchvision.transforms.v2 import functional as TF

    # hue rotation is the same operation in HLS and HSV
    images = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.2, 0.0, 1.0]]).T.reshape(1, 3, 1, 3)
    out = R.adjust_hls(images, torch.tensor([0.1]), torch.zeros(1), torch.zeros(1))
    torch.testing.assert_close(out, TF.adjust_hue(images, 0.1), rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="RGB"):
        R.adjust_hls(torch.rand(1, 1, 4, 4), torch.zeros(1), torch.zeros(1), torch.zeros(1))


@pytest.mark.parametrize("augmentation_type", R.AUGMENTATION_TYPES)
def test_augment_keeps_shape_and_range_and_repeats_with_the_same_generator(augmentation_type):
    images = torch.rand(6, 3, 16, 16)
    first = R.augment(images, augmentation_type, grayscale=0.5, invert=0.5, generator=torch.Generator().manual_seed(3))
    again = R.augment(images, augmentation_type, grayscale=0.5, invert=0.5, generator=torch.Generator().manual_seed(3))
    assert first.shape == images.shape and first.min() >= 0 and first.max() <= 1
    torch.testing.assert_close(first, again, rtol=0, atol=0)
    if augmentation_type != "none":
        other = R.augment(images, augmentation_type, generator=torch.Generator().manual_seed(4))
        assert not torch.equal(first, other)


def test_augment_none_without_extras_is_the_identity_and_crop_only_moves_pixels():
    images = torch.rand(5, 1, 8, 8)
    torch.testing.assert_close(R.augment(images, "none"), images, rtol=0, atol=0)
    shifted = R.augment(images, "crop", flip=False, padding=1, generator=torch.Generator().manual_seed(0))
    # a shift by at most one pixel: every output pixel is some input pixel of the same image, or zero
    for out, img in zip(shifted, images):
        assert set(out.flatten().tolist()) <= set(img.flatten().tolist()) | {0.0}


def test_augment_rejects_unknown_types_and_non_float_images():
    with pytest.raises(ValueError, match="augmentation_type"):
        R.augment(torch.rand(1, 3, 8, 8), "mixup")
    with pytest.raises(ValueError, match="images: expected a float tensor"):
        R.augment(torch.zeros(1, 3, 8, 8, dtype=torch.uint8))


# --- SageMaker's training knobs ---------------------------------------------------------------------


@pytest.mark.parametrize("name, kind, nesterov", [("sgd", torch.optim.SGD, False), ("nag", torch.optim.SGD, True), ("adam", torch.optim.Adam, None), ("rmsprop", torch.optim.RMSprop, None)])
def test_make_optimizer_maps_sagemaker_names_and_skips_frozen_parameters(name, kind, nesterov):
    model = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 2))
    model[0].weight.requires_grad_(False)
    optimizer = R.make_optimizer(model.parameters(), name, 0.01, 0.9, 1e-4)
    assert isinstance(optimizer, kind)
    assert sum(len(g["params"]) for g in optimizer.param_groups) == 3
    assert optimizer.param_groups[0]["lr"] == 0.01 and optimizer.param_groups[0]["weight_decay"] == 1e-4
    if nesterov is not None:
        assert optimizer.param_groups[0]["nesterov"] is nesterov


def test_make_optimizer_rejects_bad_settings():
    params = list(nn.Linear(2, 2).parameters())
    with pytest.raises(ValueError, match="optimizer"):
        R.make_optimizer(params, "lamb")
    with pytest.raises(ValueError, match="learning_rate"):
        R.make_optimizer(params, "sgd", 0.0)
    with pytest.raises(ValueError, match="momentum"):
        R.make_optimizer(params, "sgd", 0.1, 1.0)
    frozen = nn.Linear(2, 2).requires_grad_(False)
    with pytest.raises(ValueError, match="nothing to train"):
        R.make_optimizer(frozen.parameters())


def test_step_schedule_drops_the_rate_after_each_listed_epoch():
    optimizer = torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=1.0)
    schedule = R.step_schedule(optimizer, "2,4", 0.5)
    rates = []
    for _ in range(6):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    assert rates == [1.0, 1.0, 0.5, 0.5, 0.25, 0.25]
    assert R.parse_lr_steps("") == [] and R.parse_lr_steps(None) == [] and R.parse_lr_steps([3, 7]) == [3, 7]
    for bad in ("5,2", "a,b", "0", [2, 2]):
        with pytest.raises(ValueError, match="lr_scheduler_step"):
            R.parse_lr_steps(bad)
    with pytest.raises(ValueError, match="lr_scheduler_factor"):
        R.step_schedule(optimizer, "2", 0.0)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("k", [1, 3, 5])
def test_top_k_accuracy_equals_scikit_learn(seed, k):
    from sklearn.metrics import top_k_accuracy_score

    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(200, 10, generator=g)
    labels = torch.randint(0, 10, (200,), generator=g)
    expected = top_k_accuracy_score(labels.numpy(), logits.numpy(), k=k, labels=list(range(10)))
    assert R.top_k_accuracy(logits, labels, k) == pytest.approx(expected)


def test_top_k_accuracy_edge_cases():
    assert R.top_k_accuracy(torch.tensor([[0.1, 0.9]]), torch.tensor([1]), 1) == 1.0  # one row
    assert R.top_k_accuracy(torch.tensor([[0.1, 0.9]]), torch.tensor([0]), 2) == 1.0  # k = classes
    with pytest.raises(ValueError, match="k: expected"):
        R.top_k_accuracy(torch.zeros(3, 4), torch.zeros(3, dtype=torch.long), 5)
    with pytest.raises(ValueError, match="at least one row"):
        R.top_k_accuracy(torch.zeros(0, 4), torch.zeros(0, dtype=torch.long), 1)
    with pytest.raises(ValueError, match="logits, labels"):
        R.top_k_accuracy(torch.zeros(3, 4), torch.zeros(2, dtype=torch.long), 1)


# --- the printed-digit backbone and its cache ---------------------------------------------------------


@pytest.fixture
def tiny_recipe(monkeypatch):
    # the real recipe at a size that trains in a second or two
    monkeypatch.setitem(R.DIGIT_PRETRAINING, "cpu", {**R.DIGIT_PRETRAINING["cpu"], "num_images": 96, "validation_images": 32, "epochs": 1, "mini_batch_size": 32})


def test_pretrained_digit_backbone_trains_once_caches_and_then_loads(tiny_recipe, tmp_path, monkeypatch):
    backbone = R.pretrained_digit_backbone(8, device="cpu", seed=3, cache_dir=tmp_path, progress=False)
    path = R.digit_backbone_path(8, "cpu", 3, tmp_path)
    assert path.is_file() and path.name == "resnet8-cpu-seed3-v1.pt"
    assert backbone.pretraining["num_images"] == 96 and 0.0 <= backbone.pretraining["printed_accuracy"] <= 1.0
    # a second call must load, not train
    monkeypatch.setattr(R, "pretrain_digit_backbone", lambda *a, **k: pytest.fail("trained again despite the cache"))
    again = R.pretrained_digit_backbone(8, device="cpu", seed=3, cache_dir=tmp_path)
    for key, value in backbone.state_dict().items():
        torch.testing.assert_close(again.state_dict()[key], value, rtol=0, atol=0, msg=key)
    x = torch.rand(2, 3, 16, 16)
    backbone.eval(), again.eval()
    with torch.no_grad():
        maps = again.features(x)
        torch.testing.assert_close(again(x), backbone(x))
    assert [m.shape[1] for m in maps] == again.out_channels == [16, 32, 64]
    assert again.strides == [1, 2, 4]


def test_pretraining_is_deterministic_per_seed(tiny_recipe, tmp_path):
    first = R.pretrained_digit_backbone(8, device="cpu", seed=5, cache_dir=tmp_path / "a", progress=False)
    second = R.pretrained_digit_backbone(8, device="cpu", seed=5, cache_dir=tmp_path / "b", progress=False)
    other = R.pretrained_digit_backbone(8, device="cpu", seed=6, cache_dir=tmp_path / "c", progress=False)
    torch.testing.assert_close(first.layer3[0].conv1.weight, second.layer3[0].conv1.weight, rtol=0, atol=0)
    assert not torch.equal(first.layer3[0].conv1.weight, other.layer3[0].conv1.weight)


def test_pretrained_digit_backbone_without_cache_and_training_says_how_to_make_it(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"04_image_classification.*num_layers=20.*train_if_missing"):
        R.pretrained_digit_backbone(20, device="cpu", cache_dir=tmp_path, train_if_missing=False)


def test_cached_backbone_loads_dilated_and_with_its_digit_head(tiny_recipe, tmp_path):
    plain = R.pretrained_digit_classifier(8, device="cpu", seed=0, cache_dir=tmp_path, progress=False)
    dilated = R.pretrained_digit_backbone(8, device="cpu", seed=0, cache_dir=tmp_path, replace_stride_with_dilation=(False, True))
    torch.testing.assert_close(dilated.layer3[0].conv2.weight, plain.backbone.layer3[0].conv2.weight, rtol=0, atol=0)
    assert dilated.strides == [1, 2, 2]
    with torch.no_grad():
        assert plain.eval()(torch.rand(3, 3, 16, 16)).shape == (3, 10)


def test_a_corrupt_cache_file_is_retrained_not_trusted(tiny_recipe, tmp_path):
    path = R.digit_backbone_path(8, "cpu", 0, tmp_path)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a checkpoint")
    backbone = R.pretrained_digit_backbone(8, device="cpu", seed=0, cache_dir=tmp_path, progress=False)
    assert backbone.pretraining["recipe_version"] == R.RECIPE_VERSION
    assert torch.load(path, weights_only=True)["meta"]["num_layers"] == 8
