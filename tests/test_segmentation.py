"""helpers.segmentation as a specification: metrics against a brute-force loop and torchmetrics,
the bilinear transposed convolution against F.interpolate, the heads against torchvision and
brute force, tiled inference against whole-image inference, and the errors bad masks raise."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix, MulticlassJaccardIndex

from helpers import segmentation as seg

SEEDS = [0, 1, 2]


def random_masks(seed: int, num_classes: int = 5, shape=(3, 17, 23), ignore_fraction: float = 0.2):
    g = torch.Generator().manual_seed(seed)
    target = torch.randint(0, num_classes, shape, generator=g)
    target[torch.rand(shape, generator=g) < ignore_fraction] = 255
    # predictions agree with the target most of the time, so IoUs are neither 0 nor 1
    pred = torch.where(torch.rand(shape, generator=g) < 0.6, target.clamp(max=num_classes - 1), torch.randint(0, num_classes, shape, generator=g))
    return pred, target


def brute_force_confusion(pred, target, num_classes, ignore_index=255):
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    for p, t in zip(pred.reshape(-1).tolist(), target.reshape(-1).tolist()):
        if t != ignore_index:
            cm[t, p] += 1
    return cm


def brute_force_iou(pred, target, num_classes, ignore_index=255):
    """Per class: |pred == c and target == c| / |pred == c or target == c| over labelled pixels."""
    labelled = target != ignore_index
    ious = []
    for c in range(num_classes):
        p, t = (pred == c) & labelled, (target == c) & labelled
        union = int((p | t).sum())
        ious.append(int((p & t).sum()) / union if union else math.nan)
    return ious


# ------------------------------------------------------------------ confusion matrix and metrics


@pytest.mark.parametrize("seed", SEEDS)
def test_confusion_matrix_counts_each_labelled_pixel_once_like_a_loop_and_torchmetrics(seed):
    pred, target = random_masks(seed)
    cm = seg.confusion_matrix(pred, target, 5)
    assert cm.dtype == torch.int64
    np.testing.assert_array_equal(cm.numpy(), brute_force_confusion(pred, target, 5))
    oracle = MulticlassConfusionMatrix(num_classes=5, ignore_index=255)(pred, target)
    np.testing.assert_array_equal(cm.numpy(), oracle.numpy())
    assert int(cm.sum()) == int((target != 255).sum())


@pytest.mark.parametrize("seed", SEEDS)
def test_confusion_matrices_of_batches_sum_to_the_data_set_matrix(seed):
    pred, target = random_masks(seed, shape=(6, 9, 11))
    whole = seg.confusion_matrix(pred, target, 5)
    summed = sum(seg.confusion_matrix(pred[i : i + 2], target[i : i + 2], 5) for i in range(0, 6, 2))
    assert torch.equal(whole, summed)


def test_confusion_matrix_accepts_numpy_uint8_masks():
    pred, target = random_masks(3)
    cm = seg.confusion_matrix(pred.numpy().astype(np.uint8), target.numpy().astype(np.uint8), 5)
    assert torch.equal(cm, seg.confusion_matrix(pred, target, 5))


@pytest.mark.parametrize("seed", SEEDS)
def test_predictions_on_ignored_pixels_change_nothing(seed):
    pred, target = random_masks(seed)
    scrambled = torch.where(target == 255, (pred + 1) % 5, pred)
    assert torch.equal(seg.confusion_matrix(pred, target, 5), seg.confusion_matrix(scrambled, target, 5))


@pytest.mark.parametrize("seed", SEEDS)
def test_per_class_iou_and_mean_iou_match_a_per_class_loop(seed):
    pred, target = random_masks(seed, num_classes=6)
    cm = seg.confusion_matrix(pred, target, 6)
    expected = brute_force_iou(pred, target, 6)
    np.testing.assert_allclose(seg.per_class_iou(cm).numpy(), expected, rtol=1e-12)
    assert seg.mean_iou(cm) == pytest.approx(float(np.nanmean(expected)), rel=1e-12)


@pytest.mark.parametrize("seed", SEEDS)
def test_metrics_accumulated_over_batches_match_torchmetrics(seed):
    jaccard = MulticlassJaccardIndex(num_classes=5, ignore_index=255, average="macro")
    accuracy = MulticlassAccuracy(num_classes=5, ignore_index=255, average="micro")
    cm = torch.zeros(5, 5, dtype=torch.long)
    for batch in range(4):
        pred, target = random_masks(100 * seed + batch, shape=(2, 13, 7))
        cm += seg.confusion_matrix(pred, target, 5)
        jaccard.update(pred, target)
        accuracy.update(pred, target)
    assert seg.mean_iou(cm) == pytest.approx(float(jaccard.compute()), abs=1e-6)
    assert seg.pixel_accuracy(cm) == pytest.approx(float(accuracy.compute()), abs=1e-6)


def test_pixel_accuracy_is_correct_over_labelled_pixels_by_hand():
    target = torch.tensor([[0, 1, 255], [1, 1, 2]])
    pred = torch.tensor([[0, 2, 0], [1, 1, 2]])
    cm = seg.confusion_matrix(pred, target, 3)
    assert seg.pixel_accuracy(cm) == pytest.approx(4 / 5)
    # class 0: 1/1, class 1: 2/3 (one missed), class 2: 1/2 (one false positive)
    np.testing.assert_allclose(seg.per_class_iou(cm).numpy(), [1.0, 2 / 3, 1 / 2])


def test_a_class_absent_from_prediction_and_target_is_nan_and_left_out_of_the_mean():
    target = torch.tensor([[0, 0, 1, 1]])
    pred = torch.tensor([[0, 1, 1, 1]])
    cm = seg.confusion_matrix(pred, target, 4)
    iou = seg.per_class_iou(cm)
    assert iou[0] == pytest.approx(1 / 2) and iou[1] == pytest.approx(2 / 3)
    assert math.isnan(iou[2]) and math.isnan(iou[3])
    assert seg.mean_iou(cm) == pytest.approx((1 / 2 + 2 / 3) / 2)
    oracle = MulticlassJaccardIndex(num_classes=4, average="macro")(pred, target)
    assert seg.mean_iou(cm) == pytest.approx(float(oracle), abs=1e-6)


def test_a_class_only_predicted_counts_as_zero_iou():
    target = torch.tensor([[0, 0, 0, 0]])
    pred = torch.tensor([[0, 0, 0, 2]])
    cm = seg.confusion_matrix(pred, target, 3)
    np.testing.assert_allclose(seg.per_class_iou(cm).numpy(), [3 / 4, math.nan, 0.0])
    assert seg.mean_iou(cm) == pytest.approx(3 / 8)


def test_perfect_prediction_scores_one_and_a_single_pixel_works():
    pred, target = random_masks(7)
    perfect = torch.where(target == 255, 0, target)
    cm = seg.confusion_matrix(perfect, target, 5)
    assert seg.mean_iou(cm) == 1.0 and seg.pixel_accuracy(cm) == 1.0
    one = seg.confusion_matrix(torch.tensor([[3]]), torch.tensor([[3]]), 5)
    assert seg.mean_iou(one) == 1.0 and int(one.sum()) == 1


def test_an_all_ignored_or_empty_evaluation_gives_nan_not_a_crash():
    target = torch.full((2, 4, 4), 255)
    cm = seg.confusion_matrix(torch.zeros_like(target), target, 3)
    assert int(cm.sum()) == 0
    assert math.isnan(seg.mean_iou(cm)) and math.isnan(seg.pixel_accuracy(cm))
    empty = seg.confusion_matrix(torch.zeros(0, 4, 4, dtype=torch.long), torch.zeros(0, 4, 4, dtype=torch.long), 3)
    assert empty.shape == (3, 3) and int(empty.sum()) == 0


def test_accumulate_confusion_runs_a_model_over_batches_and_matches_one_big_matrix():
    pred, target = random_masks(11, shape=(6, 8, 8))

    def model(images):  # the "images" carry the predictions: one-hot logits
        return F.one_hot(images[:, 0].long(), 5).permute(0, 3, 1, 2).float()

    batches = [(pred[i : i + 3, None].float(), target[i : i + 3]) for i in (0, 3)]
    cm = seg.accumulate_confusion(model, batches, 5)
    assert torch.equal(cm, seg.confusion_matrix(pred, target, 5))
    with pytest.raises(ValueError, match="model: expected logits"):
        seg.accumulate_confusion(model, batches, 6)


@pytest.mark.parametrize(
    "pred, target, num_classes, error, message",
    [
        (torch.zeros(2, 4, 4, dtype=torch.long), torch.zeros(2, 4, 5, dtype=torch.long), 3, ValueError, r"pred: expected shape \(2, 4, 5\)"),
        (torch.zeros(4, 4, dtype=torch.long), torch.tensor([[0, 3, 0, 0]] * 4), 3, ValueError, r"target: class ids must be in \[0, 3\) or 255 \(ignore\); found \[3\]"),
        (torch.zeros(4, 4, dtype=torch.long), torch.full((4, 4), -1), 3, ValueError, r"target: class ids .* found \[-1\]"),
        (torch.full((4, 4), 255), torch.zeros(4, 4, dtype=torch.long), 3, ValueError, r"pred: class ids must be in \[0, 3\); found \[255\]"),
        (torch.zeros(4, 4, dtype=torch.long), torch.zeros(4, 4), 3, TypeError, r"target: expected integer class ids"),
        (torch.zeros(4, 4, dtype=torch.long), torch.zeros(4, 4, dtype=torch.bool), 3, TypeError, r"target: expected integer"),
        (torch.zeros(4, dtype=torch.long), torch.zeros(4, dtype=torch.long), 3, ValueError, r"target: expected a \(\.\.\., H, W\)"),
        (torch.zeros(4, 4, dtype=torch.long), torch.zeros(4, 4, dtype=torch.long), 0, ValueError, r"num_classes"),
        ([[0]], torch.zeros(1, 1, dtype=torch.long), 3, TypeError, r"pred: expected a torch.Tensor or numpy array"),
    ],
)
def test_bad_masks_raise_errors_that_name_the_problem(pred, target, num_classes, error, message):
    with pytest.raises(error, match=message):
        seg.confusion_matrix(pred, target, num_classes)


def test_ignore_index_must_not_be_a_real_class():
    mask = torch.zeros(2, 2, dtype=torch.long)
    with pytest.raises(ValueError, match="ignore_index: 2 is a real class id"):
        seg.confusion_matrix(mask, mask, 3, ignore_index=2)
    assert int(seg.confusion_matrix(mask, mask, 3, ignore_index=None).sum()) == 4


def test_check_mask_checks_the_shape_against_its_image():
    mask = torch.zeros(8, 8, dtype=torch.uint8)
    assert seg.check_mask(mask, 11, shape=(8, 8)) is mask
    with pytest.raises(ValueError, match=r"labels: expected shape \(8, 9\)"):
        seg.check_mask(mask, 11, shape=(8, 9), name="labels")


def test_metrics_reject_matrices_that_are_not_confusion_matrices():
    with pytest.raises(ValueError, match="square"):
        seg.mean_iou(torch.zeros(2, 3))
    with pytest.raises(ValueError, match=">= 0"):
        seg.pixel_accuracy(torch.tensor([[1, -1], [0, 1]]))
    with pytest.raises(ValueError, match="NaN"):
        seg.per_class_iou(torch.tensor([[1.0, math.nan], [0.0, 1.0]]))


# ------------------------------------------------------------------ bilinear upsampling


@pytest.mark.parametrize("scale", [2, 3, 4, 5, 8])
@pytest.mark.parametrize("seed", SEEDS)
def test_bilinear_transposed_convolution_equals_interpolate_in_the_interior(scale, seed):
    x = torch.randn(2, 3, 7, 9, generator=torch.Generator().manual_seed(seed))
    up = seg.bilinear_upsampling(3, scale)
    ours = up(x)
    reference = F.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=False)
    assert ours.shape == reference.shape == (2, 3, 7 * scale, 9 * scale)
    interior = (slice(None), slice(None), slice(scale, -scale), slice(scale, -scale))
    torch.testing.assert_close(ours[interior], reference[interior], rtol=1e-5, atol=1e-5)
    # at the border the transposed convolution sees zeros where interpolate replicates the edge
    assert not torch.allclose(ours[..., 0, 0], reference[..., 0, 0])


def test_bilinear_kernel_is_separable_and_does_not_mix_channels():
    w = seg.bilinear_kernel(3, 3, 4)
    assert w.shape == (3, 3, 4, 4)
    taps = torch.tensor([0.25, 0.75, 0.75, 0.25])
    torch.testing.assert_close(w[1, 1], taps[:, None] * taps[None, :])
    off_diagonal = w.clone()
    off_diagonal[range(3), range(3)] = 0
    assert off_diagonal.abs().sum() == 0
    assert seg.bilinear_kernel(2, 5, 3).shape == (2, 5, 3, 3)
    with pytest.raises(ValueError, match="kernel_size"):
        seg.bilinear_kernel(2, 2, 0)


def test_bilinear_upsampling_is_learnable_or_frozen_on_request():
    assert seg.bilinear_upsampling(2, 2).weight.requires_grad
    assert not seg.bilinear_upsampling(2, 2, learnable=False).weight.requires_grad
    with pytest.raises(ValueError, match="scale"):
        seg.bilinear_upsampling(2, 0)


# ------------------------------------------------------------------ heads


def stage_features(seed: int, size=(40, 56), channels=(6, 10, 14), strides=(8, 16, 32), batch=2):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, c, math.ceil(size[0] / s), math.ceil(size[1] / s), generator=g) for c, s in zip(channels, strides)]


@pytest.mark.parametrize("variant", ["32s", "16s", "8s"])
@pytest.mark.parametrize("size", [(64, 64), (40, 56), (33, 47)])
def test_fcn_head_returns_logits_at_the_input_size(variant, size):
    head = seg.FCNHead((6, 10, 14), 4, variant)
    assert head(stage_features(0, size), size).shape == (2, 4, *size)
    assert seg.FCNHead((6, 10, 14), 4, variant, hidden=8)(stage_features(0, size), size).shape == (2, 4, *size)


@pytest.mark.parametrize("seed", SEEDS)
def test_fresh_fcn32s_is_bilinear_interpolation_of_the_coarse_scores(seed):
    feats = stage_features(seed, size=(64, 96))
    head = seg.FCNHead((6, 10, 14), 4, "32s")
    expected = F.interpolate(head.score(feats[-1]), scale_factor=32, mode="bilinear", align_corners=False)
    interior = (slice(None), slice(None), slice(32, -32), slice(32, -32))
    torch.testing.assert_close(head(feats, (64, 96))[interior], expected[interior], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("seed", SEEDS)
def test_fresh_fcn8s_ignores_its_skips_until_they_learn(seed):
    feats = stage_features(seed, size=(64, 96))
    head = seg.FCNHead((6, 10, 14), 4, "8s")
    out = head(feats, (64, 96))
    coarse = head.score(feats[-1])
    expected = F.interpolate(F.interpolate(F.interpolate(coarse, scale_factor=2, mode="bilinear"), scale_factor=2, mode="bilinear"), scale_factor=8, mode="bilinear")
    interior = (slice(None), slice(None), slice(32, -32), slice(32, -32))
    torch.testing.assert_close(out[interior], expected[interior], rtol=1e-4, atol=1e-5)
    # the zero-initialised skip scores still receive gradients, so the finer stages start to count
    out.square().sum().backward()
    assert all(layer.weight.grad.abs().sum() > 0 for layer in head.skip_scores)
    with torch.no_grad():
        for layer in head.skip_scores:
            layer.weight.normal_()
    changed = [f.clone() for f in feats]
    changed[0] += 1.0
    assert not torch.allclose(head(feats, (64, 96)), head(changed, (64, 96)))


def test_fcn_head_rejects_unknown_variants_and_too_few_stages():
    with pytest.raises(ValueError, match="variant"):
        seg.FCNHead((6, 10, 14), 4, "4s")
    with pytest.raises(ValueError, match="in_channels"):
        seg.FCNHead((6, 10), 4, "8s")


@pytest.mark.parametrize("seed", SEEDS)
def test_pyramid_pooling_branches_average_each_bin_like_a_loop(seed):
    x = torch.randn(2, 4, 12, 12, generator=torch.Generator().manual_seed(seed))
    module = seg.PyramidPooling(4, bins=(1, 2, 3, 6), branch_channels=2)
    for b in (1, 2, 3, 6):
        step = 12 // b
        brute = torch.stack([torch.stack([x[..., i * step : (i + 1) * step, j * step : (j + 1) * step].mean((-2, -1)) for j in range(b)], -1) for i in range(b)], -2)
        torch.testing.assert_close(F.adaptive_avg_pool2d(x, b), brute)
    module.eval()
    out = module(x)
    assert out.shape == (2, 4 + 4 * 2, 12, 12) and module.out_channels == 12
    torch.testing.assert_close(out[:, :4], x)  # the input passes through beside the pooled context
    # the 1-bin branch is global context: constant over the map
    global_branch = out[:, 4:6]
    torch.testing.assert_close(global_branch, global_branch[..., :1, :1].expand_as(global_branch))


def test_psp_head_returns_logits_at_the_input_size_even_when_bins_exceed_the_map():
    head = seg.PSPHead((6, 10, 14), 5, hidden=16)
    feats = [torch.randn(2, 14, 4, 4)]
    assert head(feats, (32, 32)).shape == (2, 5, 32, 32)


@pytest.mark.parametrize("seed", SEEDS)
def test_aspp_head_computes_what_torchvision_deeplab_head_computes(seed):
    from torchvision.models.segmentation.deeplabv3 import DeepLabHead

    torch.manual_seed(seed)
    reference = DeepLabHead(16, 5, atrous_rates=(2, 4, 6)).eval()
    ours = seg.ASPPHead(16, 5, rates=(2, 4, 6)).eval()
    ours.load_state_dict(dict(zip(ours.state_dict().keys(), reference.state_dict().values())))
    with torch.no_grad():  # random BN statistics, so the test is not just of fresh layers
        for module in reference.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.normal_()
                module.running_var.uniform_(0.5, 2.0)
    ours.load_state_dict(dict(zip(ours.state_dict().keys(), reference.state_dict().values())))
    x = torch.randn(2, 16, 10, 12, generator=torch.Generator().manual_seed(seed))
    torch.testing.assert_close(ours([x], (10, 12)), reference(x), rtol=1e-5, atol=1e-5)


def test_an_atrous_branch_sees_pixels_exactly_rate_apart():
    aspp = seg.ASPP(3, rates=(3,), out_channels=2).eval()
    atrous_conv = aspp.convs[1][0]  # before BN-ReLU, which could zero the gradient
    x = torch.randn(1, 3, 15, 15, requires_grad=True)
    atrous_conv(x)[0, :, 7, 7].sum().backward()
    touched = (x.grad.abs().sum(1)[0] > 0).nonzero().tolist()
    assert sorted(touched) == [[7 + dy, 7 + dx] for dy in (-3, 0, 3) for dx in (-3, 0, 3)]


def test_make_head_maps_sagemaker_algorithm_names_to_heads():
    assert isinstance(seg.make_head("fcn", (6, 10, 14), 3), seg.FCNHead)
    assert isinstance(seg.make_head("psp", (6, 10, 14), 3), seg.PSPHead)
    assert isinstance(seg.make_head("deeplab", (6, 10, 14), 3), seg.ASPPHead)
    with pytest.raises(ValueError, match="algorithm"):
        seg.make_head("unet", (6, 10, 14), 3)


class TinyBackbone(nn.Module):
    """Three stages at strides 8, 16, 32, like a ResNet's last three."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 4, 3, stride=4, padding=1), nn.ReLU())
        self.stages = nn.ModuleList(nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), nn.ReLU()) for c_in, c_out in ((4, 6), (6, 10), (10, 14)))

    def forward(self, x):
        x = self.stem(x)
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features


@pytest.mark.parametrize("algorithm", ["fcn", "psp", "deeplab"])
def test_a_segmentation_net_trains_end_to_end_at_any_input_size(algorithm):
    torch.manual_seed(0)
    net = seg.SegmentationNet(TinyBackbone(), seg.make_head(algorithm, (6, 10, 14), 3, hidden=8, rates=(1, 2)))
    images = torch.randn(2, 3, 40, 52)
    target = torch.randint(0, 3, (2, 40, 52))
    target[:, :3] = 255
    logits = net(images)
    assert logits.shape == (2, 3, 40, 52)
    F.cross_entropy(logits, target, ignore_index=255).backward()
    assert next(net.backbone.parameters()).grad is not None


def test_dilate_stage_reproduces_torchvision_dilated_resnet():
    from torchvision.models.resnet import Bottleneck, ResNet

    torch.manual_seed(0)  # a short bottleneck ResNet: two blocks in each dilated stage, quick to build
    reference = ResNet(Bottleneck, [1, 1, 2, 2], replace_stride_with_dilation=[False, True, True]).eval()
    ours = ResNet(Bottleneck, [1, 1, 2, 2]).eval()
    ours.load_state_dict(reference.state_dict())
    seg.dilate_stage(ours.layer3, 2)
    seg.dilate_stage(ours.layer4, 4)
    x = torch.randn(1, 3, 48, 48)
    with torch.no_grad():
        ref_body = reference.layer4(reference.layer3(reference.layer2(reference.layer1(reference.maxpool(reference.relu(reference.bn1(reference.conv1(x))))))))
        our_body = ours.layer4(ours.layer3(ours.layer2(ours.layer1(ours.maxpool(ours.relu(ours.bn1(ours.conv1(x))))))))
    assert our_body.shape == ref_body.shape == (1, 2048, 6, 6)  # stride 8 instead of 32
    torch.testing.assert_close(our_body, ref_body)
    with pytest.raises(ValueError, match="dilation"):
        seg.dilate_stage(ours.layer4, 0)


# ------------------------------------------------------------------ tiled inference


def local_model(seed: int, layers: int = 3):
    """3x3 convolutions, stride 1: each output pixel sees inputs within `layers` pixels."""
    torch.manual_seed(seed)
    convs = []
    for i in range(layers):
        convs += [nn.Conv2d(3 if i == 0 else 6, 6, 3, padding=1), nn.Tanh()]
    return nn.Sequential(*convs, nn.Conv2d(6, 4, 1)).eval()


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("tile_size, overlap, size", [(16, 6, (45, 61)), (20, 8, (64, 64)), (32, 10, (33, 100)), (16, 6, (16, 16))])
def test_tiled_inference_equals_whole_image_inference_within_the_receptive_field(seed, tile_size, overlap, size):
    model = local_model(seed)  # receptive-field radius 3 <= overlap // 2
    image = torch.randn(3, *size, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        whole = model(image[None])[0]
    tiled = seg.sliding_window_inference(model, image, tile_size, overlap, batch_size=3)
    torch.testing.assert_close(tiled, whole, rtol=1e-5, atol=1e-5)


def test_tiled_inference_without_overlap_differs_at_the_cuts():
    model = local_model(0)
    image = torch.randn(3, 48, 48)
    with torch.no_grad():
        whole = model(image[None])[0]
    tiled = seg.sliding_window_inference(model, image, 16, 0)
    assert not torch.allclose(tiled, whole, atol=1e-4)
    # ...but is exact far from any cut
    torch.testing.assert_close(tiled[:, 4:12, 4:12], whole[:, 4:12, 4:12])


@pytest.mark.parametrize("seed", SEEDS)
def test_tiled_inference_of_a_pointwise_model_is_exact_for_any_tiling(seed):
    torch.manual_seed(seed)
    model = nn.Conv2d(3, 5, 1).eval()
    images = torch.randn(2, 3, 37, 29)
    with torch.no_grad():
        whole = model(images)
    tiled = seg.sliding_window_inference(model, images, 11, 0, batch_size=1)
    assert tiled.shape == (2, 5, 37, 29)
    torch.testing.assert_close(tiled, whole)


def test_tiled_inference_handles_an_image_smaller_than_a_tile_and_rejects_bad_settings():
    model = local_model(0)
    image = torch.randn(3, 9, 50)
    with torch.no_grad():
        whole = model(image[None])[0]
    torch.testing.assert_close(seg.sliding_window_inference(model, image, 16, 6), whole, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="overlap"):
        seg.sliding_window_inference(model, image, 16, 16)
    with pytest.raises(ValueError, match="image"):
        seg.sliding_window_inference(model, torch.randn(9, 50), 16, 6)
    with pytest.raises(ValueError, match="model: expected logits"):
        seg.sliding_window_inference(lambda t: t[:, :, ::2], image, 16, 6)


# ------------------------------------------------------------------ training pieces


@pytest.mark.parametrize("seed", SEEDS)
def test_random_rescale_crop_gives_crops_with_the_original_labels_and_ignored_padding(seed):
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(1, 256, (4, 3, 32, 40), dtype=torch.uint8, generator=g)
    masks = torch.randint(0, 4, (4, 32, 40), dtype=torch.uint8, generator=g)
    out_images, out_masks = seg.random_rescale_crop(images, masks, 32, 48, generator=torch.Generator().manual_seed(seed))
    assert out_images.shape == (4, 3, 48, 48) and out_images.dtype == torch.uint8
    assert out_masks.shape == (4, 48, 48) and out_masks.dtype == torch.uint8
    assert set(out_masks.unique().tolist()) <= {0, 1, 2, 3, 255}
    # where the mask says "padding" the image is black
    padded = out_masks == 255
    assert (out_images.permute(1, 0, 2, 3)[:, padded] == 0).all()
    again = seg.random_rescale_crop(images, masks, 32, 48, generator=torch.Generator().manual_seed(seed))
    assert torch.equal(again[0], out_images) and torch.equal(again[1], out_masks)


def test_random_rescale_crop_at_scale_one_and_full_crop_is_the_identity():
    images = torch.rand(2, 3, 24, 24)
    masks = torch.randint(0, 3, (2, 24, 24))
    out_images, out_masks = seg.random_rescale_crop(images, masks, 24, 24, scale_range=(1.0, 1.0))
    torch.testing.assert_close(out_images, images)
    assert torch.equal(out_masks, masks)


def test_random_rescale_crop_rejects_mismatched_masks():
    with pytest.raises(ValueError, match="masks: expected shape"):
        seg.random_rescale_crop(torch.rand(2, 3, 8, 8), torch.zeros(2, 8, 9, dtype=torch.long), 8, 8)
    with pytest.raises(ValueError, match="crop_size"):
        seg.random_rescale_crop(torch.rand(2, 3, 8, 8), torch.zeros(2, 8, 8, dtype=torch.long), 8, 0)


def _lrs(name, steps=10, **kwargs):
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = seg.lr_scheduler(optimizer, name, steps, **kwargs)
    lrs = []
    for _ in range(steps):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return np.array(lrs)


def test_lr_schedulers_follow_sagemakers_formulas():
    t = np.arange(10)
    np.testing.assert_allclose(_lrs("poly"), (1 - t / 10) ** 0.9, rtol=1e-6)
    np.testing.assert_allclose(_lrs("cosine"), (1 + np.cos(np.pi * t / 10)) / 2, rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(_lrs("step", steps_per_epoch=2, step_epochs=(2, 4), factor=0.5), [1, 1, 1, 1, 0.5, 0.5, 0.5, 0.5, 0.25, 0.25])
    with pytest.raises(ValueError, match="lr_scheduler_step"):
        _lrs("step")
    with pytest.raises(ValueError, match="lr_scheduler"):
        _lrs("linear")


# ------------------------------------------------------------------ inference responses


def test_png_masks_round_trip_as_indexed_pngs_with_the_voc_palette():
    from PIL import Image
    import io

    mask = torch.randint(0, 11, (13, 17), generator=torch.Generator().manual_seed(0))
    mask[0, 0] = 255
    data = seg.encode_png_mask(mask)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(io.BytesIO(data)) as image:
        assert image.mode == "P" and image.size == (17, 13)
    np.testing.assert_array_equal(seg.decode_png_mask(data), mask.numpy())
    palette = seg.color_palette()
    assert palette.shape == (256, 3)
    assert palette[:5].tolist() == [[0, 0, 0], [128, 0, 0], [0, 128, 0], [128, 128, 0], [0, 0, 128]]
    assert palette[15].tolist() == [192, 128, 128]  # VOC's "person"
    with pytest.raises(ValueError, match="mask"):
        seg.encode_png_mask(torch.full((2, 2), 300))
    with pytest.raises(TypeError, match="data"):
        seg.decode_png_mask("not bytes")


@pytest.mark.parametrize("algorithm", ["fcn", "psp", "deeplab"])
@pytest.mark.parametrize("num_layers, size", [(20, 24), (18, 64)])
def test_segmentation_net_puts_each_algorithm_on_our_resnet_backbones(algorithm, num_layers, size):
    from helpers.resnet import resnet_backbone

    torch.manual_seed(0)
    body = resnet_backbone(num_layers, (3, size, size))  # CIFAR-style strides 1, 2, 4 or ImageNet-style 4 ... 32
    net = seg.segmentation_net(algorithm, body, 5, hidden=8, rates=(1, 2)).eval()
    with torch.no_grad():
        assert net(torch.rand(2, 3, size, size + 8)).shape == (2, 5, size, size + 8)


def test_segmentation_net_needs_a_backbone_that_describes_its_stages():
    with pytest.raises(TypeError, match="out_channels"):
        seg.segmentation_net("fcn", TinyBackbone(), 3)
