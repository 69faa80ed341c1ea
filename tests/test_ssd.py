"""helpers.ssd: shapes and anchor order, the loss, post-processing against a per-image loop with
torchvision's NMS, SageMaker's response shape, and a tiny model that learns to find two boxes."""

from __future__ import annotations

import json

import pytest
import torch
import torchvision.ops as tv

from helpers import boxes as B
from helpers import ssd as S
from helpers.resnet import freeze


def tiny_ssd(num_classes: int = 3, size: int = 32) -> S.SSD:
    torch.manual_seed(0)
    return S.SSD(S.small_resnet_backbone((8, 16)), num_classes, size, source_stages=(0, 1), extra_channels=(16,))


def test_forward_gives_one_prediction_per_anchor():
    model = tiny_ssd()
    logits, offsets = model(torch.rand(2, 3, 32, 32))
    # stride 4, 8 from the base, then one extra map at stride 16: 8x8, 4x4, 2x2 cells.
    assert model.feature_shapes == [(8, 8), (4, 4), (2, 2)]
    expected = sum(h * w * k for (h, w), k in zip(model.feature_shapes, model.anchors_per_location))
    assert model.anchors.shape == (expected, 4)
    assert logits.shape == (2, expected, 4) and offsets.shape == (2, expected, 4)


def test_head_outputs_line_up_with_the_anchors_order():
    model = tiny_ssd(num_classes=2)
    # A head with zero weights outputs its bias at every cell: slot j of a cell is anchor j there.
    head = model.heads["classes"][0]
    k = model.anchors_per_location[0]
    with torch.no_grad():
        head.weight.zero_()
        head.bias.copy_(torch.arange(k * 3, dtype=torch.float32))
    logits, _ = model(torch.rand(1, 3, 32, 32))
    first_map = logits[0, : 8 * 8 * k].reshape(8 * 8, k, 3)
    assert torch.equal(first_map, torch.arange(k * 3, dtype=torch.float32).reshape(k, 3).expand(64, k, 3))


def test_model_rejects_images_of_the_wrong_size_and_bad_settings():
    model = tiny_ssd()
    with pytest.raises(ValueError, match="image_size"):
        model(torch.rand(1, 3, 40, 40))
    with pytest.raises(ValueError, match="source_stages"):
        S.SSD(S.small_resnet_backbone((8, 16)), 3, 32, source_stages=(1, 0))
    with pytest.raises(ValueError, match="base_network"):
        S.ssd_model(3, "3,32,32", base_network="vgg-16")


def test_ssd_model_builds_from_sagemakers_knobs():
    model = S.ssd_model(4, "3,32,32", base_network="resnet-8", source_stages=(2,), extra_channels=(32, 32))
    assert model.num_classes == 4 and model.image_size == (32, 32)
    assert model.feature_shapes == [(8, 8), (4, 4), (2, 2)]
    assert S.parse_base_network("ResNet-50") == 50


def test_freeze_layer_pattern_freezes_only_the_base():
    model = tiny_ssd()
    frozen = freeze(model, r"base\.")
    assert frozen and all(name.startswith("base.") for name in frozen)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and not any(n.startswith("base.") for n in trainable)


def test_loss_is_the_same_for_lists_and_padded_targets_and_trains_every_part():
    model = tiny_ssd()
    images = torch.rand(2, 3, 32, 32)
    boxes = [torch.tensor([[2.0, 3.0, 12.0, 20.0]]), torch.tensor([[5.0, 5.0, 25.0, 15.0], [20.0, 18.0, 30.0, 31.0]])]
    labels = [torch.tensor([1]), torch.tensor([0, 2])]
    padded_boxes = torch.zeros(2, 2, 4)
    padded_labels = torch.full((2, 2), -1)
    for i, (b, lab) in enumerate(zip(boxes, labels)):
        padded_boxes[i, : len(b)], padded_labels[i, : len(lab)] = b, lab
    model.eval()  # batch norm in eval mode: two forward passes see the same statistics
    cls, loc = S.ssd_loss(model, images, boxes, labels)
    cls2, loc2 = S.ssd_loss(model, images, padded_boxes, padded_labels)
    torch.testing.assert_close((cls, loc), (cls2, loc2))
    (cls + loc).backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def brute_force_detect(logits, offsets, anchors, score_threshold, nms_threshold, top_k):
    results = []
    probs = logits.softmax(-1)[..., 1:]
    for i in range(logits.shape[0]):
        decoded = B.decode_boxes(offsets[i], anchors).clamp(0, 1)
        rows = []
        for c in range(probs.shape[-1]):
            mask = (probs[i, :, c] > score_threshold) & (decoded[:, 2] > decoded[:, 0]) & (decoded[:, 3] > decoded[:, 1])
            kept = tv.nms(decoded[mask], probs[i, mask, c], nms_threshold)
            rows += [(probs[i, mask, c][j].item(), c, decoded[mask][j]) for j in kept.tolist()]
        rows.sort(key=lambda r: -r[0])
        results.append(rows[:top_k])
    return results


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_detect_matches_per_image_per_class_nms_with_torchvision(seed):
    g = torch.Generator().manual_seed(seed)
    anchors = B.anchor_boxes([(4, 4), (2, 2)], B.ssd_sizes(2, 0.3, 0.7), [(1.0, 2.0, 0.5)] * 2)
    logits = torch.randn(3, anchors.shape[0], 4, generator=g) * 2
    offsets = torch.randn(3, anchors.shape[0], 4, generator=g) * 0.5
    ours = S.detect(logits, offsets, anchors, score_threshold=0.2, nms_threshold=0.4, top_k=15, pre_nms_top_k=10_000)
    reference = brute_force_detect(logits, offsets, anchors, 0.2, 0.4, 15)
    for got, want in zip(ours, reference):
        assert got["scores"].tolist() == pytest.approx([r[0] for r in want])
        assert got["labels"].tolist() == [r[1] for r in want]
        torch.testing.assert_close(got["boxes"], torch.stack([r[2] for r in want]) if want else torch.zeros(0, 4))


def test_detect_before_and_after_nms():
    anchors = torch.tensor([[0.1, 0.1, 0.5, 0.5], [0.12, 0.1, 0.52, 0.5], [0.6, 0.6, 0.9, 0.9]])
    logits = torch.full((1, 3, 3), -10.0)
    logits[0, 0, 1], logits[0, 1, 1], logits[0, 2, 2] = 5.0, 4.0, 3.0  # two overlapping "class 0", one "class 1"
    offsets = torch.zeros(1, 3, 4)
    after = S.detect(logits, offsets, anchors, score_threshold=0.5, nms_threshold=0.45)[0]
    before = S.detect(logits, offsets, anchors, score_threshold=0.5, nms_threshold=1.0)[0]
    assert after["labels"].tolist() == [0, 1] and before["labels"].tolist() == [0, 0, 1]
    torch.testing.assert_close(after["boxes"], anchors[[0, 2]])


def test_sagemaker_response_is_json_with_normalised_corners_by_decreasing_score():
    detections = {"boxes": torch.tensor([[0.1, 0.2, 0.3, 0.4], [0.5, 0.5, 0.9, 1.0]]), "scores": torch.tensor([0.3, 0.8]), "labels": torch.tensor([2, 7])}
    response = S.sagemaker_response(detections)
    assert json.loads(json.dumps(response)) == response
    assert response["prediction"][0] == pytest.approx([7.0, 0.8, 0.5, 0.5, 0.9, 1.0])
    assert len(S.sagemaker_response(detections, score_threshold=0.5)["prediction"]) == 1
    with pytest.raises(ValueError, match="detections"):
        S.sagemaker_response({"boxes": torch.zeros(0, 4)})


def test_a_tiny_ssd_learns_to_find_two_squares():
    torch.manual_seed(0)
    model = tiny_ssd(num_classes=2)
    images = torch.zeros(4, 3, 32, 32)
    boxes = [torch.tensor([[4.0, 4.0, 14.0, 14.0], [18.0, 16.0, 30.0, 28.0]])] * 4
    labels = [torch.tensor([0, 1])] * 4
    images[:, 0, 4:14, 4:14] = 1.0  # a red square is class 0
    images[:, 2, 16:28, 18:30] = 1.0  # a blue one is class 1
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(60):
        optimizer.zero_grad()
        cls, loc = S.ssd_loss(model, images, boxes, labels)
        (cls + loc).backward()
        optimizer.step()
    found = S.predict(model, images[:1], score_threshold=0.3)[0]
    result = B.mean_average_precision([found["boxes"] * 32], [found["scores"]], [found["labels"]], boxes[:1], labels[:1])
    assert result.map > 0.99, f"mAP {result.map}: {found}"


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_augmentation_moves_boxes_with_the_pixels(seed):
    torch.manual_seed(seed)
    images = torch.zeros(4, 3, 48, 48)
    boxes, labels = [], []
    for i in range(4):
        x1, y1 = 4 + 6 * i, 10 + 3 * i
        images[i, :, y1 : y1 + 14, x1 : x1 + 10] = 1.0  # a white block where the box is
        boxes.append(torch.tensor([[float(x1), float(y1), x1 + 10.0, y1 + 14.0]]))
        labels.append(torch.tensor([i]))
    transform = S.detection_augmentation(48, colour_jitter=(0.0, 0.0, 0.0, 0.0), fill=0.0, flip_probability=0.5)
    out, out_boxes, out_labels = S.augment(transform, images, boxes, labels, group_size=2)
    assert out.shape == (4, 3, 48, 48)
    for i in range(4):
        assert out_labels[i].tolist() == [i]  # a whole object never falls off the canvas here
        bright = (out[i, 0] > 0.5).nonzero()
        y1, x1 = bright.min(0).values.tolist()
        y2, x2 = (bright.max(0).values + 1).tolist()
        torch.testing.assert_close(out_boxes[i][0], torch.tensor([x1, y1, x2, y2], dtype=torch.float32), atol=1.5, rtol=0)


def test_augmentation_rejects_bad_settings():
    with pytest.raises(ValueError, match="flip_probability"):
        S.detection_augmentation(32, flip_probability=2.0)
    with pytest.raises(ValueError, match="gt_boxes"):
        S.augment(S.detection_augmentation(32), torch.rand(2, 3, 32, 32), [torch.zeros(0, 4)], [torch.zeros(0)])
