"""helpers.boxes against torchvision.ops, torchmetrics and brute-force loops, on inputs drawn fresh per seed."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
import torchvision.ops as tv

from helpers import boxes as B

SEEDS = [0, 1, 2]


def random_boxes(n: int, generator: torch.Generator, size: float = 100.0, max_side: float = 40.0, min_side: float = 1.0) -> torch.Tensor:
    """n random xyxy boxes with sides in [min_side, min_side + max_side], corners in a size x size square: (n, 4)."""
    x1y1 = torch.rand(n, 2, generator=generator) * size
    wh = min_side + torch.rand(n, 2, generator=generator) * max_side
    return torch.cat((x1y1, x1y1 + wh), dim=1)


# ---------------------------------------------------------------------------------------------- formats
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("in_fmt", B.BOX_FORMATS)
@pytest.mark.parametrize("out_fmt", B.BOX_FORMATS)
def test_box_convert_matches_torchvision_between_every_pair_of_formats(seed, in_fmt, out_fmt):
    g = torch.Generator().manual_seed(seed)
    boxes = tv.box_convert(random_boxes(50, g), "xyxy", in_fmt)
    torch.testing.assert_close(B.box_convert(boxes, in_fmt, out_fmt), tv.box_convert(boxes, in_fmt, out_fmt))


def test_box_convert_reads_sagemakers_left_top_width_height():
    # SageMaker's JSON annotation {"left": 10, "top": 20, "width": 30, "height": 40}.
    xyxy = B.box_convert(torch.tensor([[10.0, 20.0, 30.0, 40.0]]), "xywh", "xyxy")
    assert xyxy.tolist() == [[10.0, 20.0, 40.0, 60.0]]


def test_box_convert_keeps_leading_dimensions_and_rejects_unknown_formats():
    boxes = torch.rand(2, 3, 4)
    assert B.box_convert(boxes, "xyxy", "cxcywh").shape == (2, 3, 4)
    with pytest.raises(ValueError, match="in_fmt"):
        B.box_convert(boxes, "ltrb", "xyxy")
    with pytest.raises(ValueError, match="boxes"):
        B.box_convert(torch.rand(3, 5), "xyxy", "xywh")


@pytest.mark.parametrize("seed", SEEDS)
def test_normalize_then_denormalize_is_the_identity_and_scales_by_width_and_height(seed):
    g = torch.Generator().manual_seed(seed)
    boxes = random_boxes(20, g)
    norm = B.normalize_boxes(boxes, (200, 400))  # height 200, width 400
    torch.testing.assert_close(norm[:, 0], boxes[:, 0] / 400)
    torch.testing.assert_close(norm[:, 3], boxes[:, 3] / 200)
    torch.testing.assert_close(B.denormalize_boxes(norm, (200, 400)), boxes)
    with pytest.raises(ValueError, match="image_size"):
        B.normalize_boxes(boxes, (0, 10))


@pytest.mark.parametrize("seed", SEEDS)
def test_clip_and_area_match_torchvision(seed):
    g = torch.Generator().manual_seed(seed)
    boxes = random_boxes(30, g, size=120.0) - 10.0
    torch.testing.assert_close(B.clip_boxes_to_image(boxes, (90, 110)), tv.clip_boxes_to_image(boxes, (90, 110)))
    torch.testing.assert_close(B.box_area(boxes), tv.box_area(boxes))


# ---------------------------------------------------------------------------------------------- IoU
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("n, m", [(1, 1), (7, 13), (40, 25)])
def test_box_iou_matches_torchvision(seed, n, m):
    g = torch.Generator().manual_seed(seed)
    a, b = random_boxes(n, g), random_boxes(m, g)
    torch.testing.assert_close(B.box_iou(a, b), tv.box_iou(a, b))


def test_box_iou_of_a_hand_computed_pair():
    # Two 2x2 squares overlapping in a 1x2 strip: 2 / (4 + 4 - 2).
    iou = B.box_iou(torch.tensor([[0.0, 0.0, 2.0, 2.0]]), torch.tensor([[1.0, 0.0, 3.0, 2.0]]))
    assert iou.item() == pytest.approx(1 / 3)


def test_box_iou_of_empty_inputs_has_empty_shape():
    assert B.box_iou(torch.zeros(0, 4), torch.rand(3, 4).sort(-1).values).shape == (0, 3)
    assert B.box_iou(torch.tensor([[0.0, 0.0, 1.0, 1.0]]), torch.zeros(0, 4)).shape == (1, 0)


def test_box_iou_of_zero_area_boxes_is_zero_not_nan():
    point = torch.tensor([[1.0, 1.0, 1.0, 1.0]])
    line = torch.tensor([[0.0, 1.0, 2.0, 1.0]])
    assert torch.isnan(tv.box_iou(point, point)).all()  # the library's answer we improve on
    assert B.box_iou(point, point).item() == 0.0
    assert B.box_iou(line, point).item() == 0.0
    assert B.box_iou(point, torch.tensor([[0.0, 0.0, 2.0, 2.0]])).item() == 0.0


@pytest.mark.parametrize(
    "bad, message",
    [
        (torch.tensor([[2.0, 0.0, 1.0, 1.0]]), "x1 <= x2"),
        (torch.tensor([[0.0, 0.0, 1.0, math.nan]]), "NaN"),
        (torch.zeros(3), r"\(N, 4\)"),
        ([[0.0, 0.0, 1.0, 1.0]], "torch.Tensor"),
    ],
)
def test_box_iou_rejects_inverted_nan_and_misshapen_boxes(bad, message):
    with pytest.raises((ValueError, TypeError), match=message):
        B.box_iou(bad, torch.tensor([[0.0, 0.0, 1.0, 1.0]]))


def test_box_iou_accepts_integer_pixel_boxes():
    a = torch.tensor([[0, 0, 4, 4]])
    assert B.box_iou(a, a).item() == 1.0


# ---------------------------------------------------------------------------------------------- anchors
def test_ssd_sizes_follow_the_papers_linear_scales():
    sizes = B.ssd_sizes(6, 0.2, 0.9)
    scales = [0.2, 0.34, 0.48, 0.62, 0.76, 0.9, 1.0]
    for k, (s, extra) in enumerate(sizes):
        assert s == pytest.approx(scales[k])
        assert extra == pytest.approx(math.sqrt(scales[k] * scales[k + 1]))
    with pytest.raises(ValueError, match="num_maps"):
        B.ssd_sizes(0)


def test_anchor_boxes_count_centres_sizes_and_order():
    shapes = [(4, 4), (2, 3)]
    sizes = [(0.2, 0.3), (0.5,)]
    ratios = [(1.0, 2.0, 0.5), (1.0, 3.0)]
    anchors = B.anchor_boxes(shapes, sizes, ratios, clip=False)
    per_location = [B.anchors_per_location(s, r) for s, r in zip(sizes, ratios)]
    assert per_location == [4, 2]
    assert anchors.shape == (4 * 4 * 4 + 2 * 3 * 2, 4)
    cxcywh = B.box_convert(anchors, "xyxy", "cxcywh")
    # First cell of the first map: centre (1/8, 1/8); boxes (0.2, r=1), (0.3, r=1), (0.2, r=2), (0.2, r=1/2).
    expected_wh = [(0.2, 0.2), (0.3, 0.3), (0.2 * math.sqrt(2), 0.2 / math.sqrt(2)), (0.2 / math.sqrt(2), 0.2 * math.sqrt(2))]
    torch.testing.assert_close(cxcywh[:4, :2], torch.full((4, 2), 0.125))
    torch.testing.assert_close(cxcywh[:4, 2:], torch.tensor(expected_wh))
    # Cells go row by row: the next cell is one column to the right.
    torch.testing.assert_close(cxcywh[4, :2], torch.tensor([0.375, 0.125]))
    # Second map, row 1, column 2, second box: centre ((2 + .5) / 3, (1 + .5) / 2), ratio 3.
    idx = 64 + (1 * 3 + 2) * 2 + 1
    torch.testing.assert_close(cxcywh[idx], torch.tensor([2.5 / 3, 0.75, 0.5 * math.sqrt(3), 0.5 / math.sqrt(3)]))


def test_anchor_boxes_are_clipped_to_the_unit_square_by_default():
    anchors = B.anchor_boxes([(2, 2)], [(0.9,)], [(1.0, 2.0)])
    assert anchors.min() >= 0 and anchors.max() <= 1
    with pytest.raises(ValueError, match="one entry per feature map"):
        B.anchor_boxes([(2, 2)], [(0.9,), (0.5,)], [(1.0,)])


# ---------------------------------------------------------------------------------------------- matching
def brute_force_match(anchors, gt, threshold):
    iou = tv.box_iou(gt, anchors)  # (G, A)
    index = []
    for a in range(anchors.shape[0]):
        column = iou[:, a].tolist()
        best = max(range(len(column)), key=lambda g: (column[g], -g)) if column else None
        index.append(best if best is not None and column[best] >= threshold else -1)
    for g in reversed(range(gt.shape[0])):  # lower index claims last, so it wins a shared anchor
        row = iou[g].tolist()
        index[max(range(len(row)), key=lambda a: (row[a], -a))] = g
    return torch.tensor(index)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("threshold", [0.3, 0.5])
def test_match_anchors_matches_the_brute_force_rule(seed, threshold):
    g = torch.Generator().manual_seed(seed)
    anchors = B.anchor_boxes([(8, 8), (4, 4), (2, 2)], B.ssd_sizes(3), [(1.0, 2.0, 0.5)] * 3)
    gt = random_boxes(6, g, size=0.7, max_side=0.3)
    got = B.match_anchors(anchors, gt, threshold)
    assert torch.equal(got, brute_force_match(anchors, gt, threshold))


def test_match_anchors_gives_every_ground_truth_an_anchor_even_below_threshold():
    anchors = torch.tensor([[0.0, 0.0, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0]])
    tiny = torch.tensor([[0.0, 0.0, 0.05, 0.05], [0.9, 0.9, 0.95, 0.95]])
    assert B.match_anchors(anchors, tiny, 0.5).tolist() == [0, 1]
    assert B.match_anchors(anchors, torch.zeros(0, 4), 0.5).tolist() == [-1, -1]


@pytest.mark.parametrize("seed", SEEDS)
def test_encode_then_decode_is_the_identity(seed):
    g = torch.Generator().manual_seed(seed)
    boxes, anchors = random_boxes(100, g).double(), random_boxes(100, g).double()
    offsets = B.encode_boxes(boxes, anchors)
    torch.testing.assert_close(B.decode_boxes(offsets, anchors), boxes)
    torch.testing.assert_close(B.encode_boxes(B.decode_boxes(offsets, anchors), anchors), offsets)
    # An anchor encodes onto itself as zero offsets.
    torch.testing.assert_close(B.encode_boxes(anchors, anchors), torch.zeros_like(anchors))


def test_encode_uses_the_variances_and_rejects_zero_size_boxes():
    anchor = torch.tensor([[0.0, 0.0, 2.0, 2.0]])
    box = torch.tensor([[1.0, 0.0, 3.0, 4.0]])  # centre moves (+1, +1), height doubles
    offsets = B.encode_boxes(box, anchor, variances=(0.1, 0.2))
    torch.testing.assert_close(offsets, torch.tensor([[1 / 0.2, 1 / 0.2, 0.0, math.log(2) / 0.2]]))
    with pytest.raises(ValueError, match="zero-width"):
        B.encode_boxes(torch.tensor([[1.0, 1.0, 1.0, 2.0]]), anchor)


@pytest.mark.parametrize("seed", SEEDS)
def test_multibox_targets_label_and_encode_each_images_matches(seed):
    g = torch.Generator().manual_seed(seed)
    anchors = B.anchor_boxes([(6, 6), (3, 3)], B.ssd_sizes(2), [(1.0, 2.0, 0.5)] * 2)
    gts = [random_boxes(k, g, size=0.7, max_side=0.3) for k in (3, 0, 5)]
    labels = [torch.randint(0, 4, (len(b),), generator=g) for b in gts]
    target_labels, target_offsets = B.multibox_targets(anchors, gts, labels, 0.5)
    assert target_labels.shape == (3, anchors.shape[0]) and target_offsets.shape == (3, anchors.shape[0], 4)
    for i in range(3):
        index = B.match_anchors(anchors, gts[i], 0.5)
        expected = torch.where(index >= 0, labels[i][index.clamp(min=0)] + 1, 0) if len(gts[i]) else torch.zeros_like(index)
        assert torch.equal(target_labels[i], expected)
        positive = index >= 0
        decoded = B.decode_boxes(target_offsets[i][positive], anchors[positive])
        torch.testing.assert_close(decoded, gts[i][index[positive]], atol=1e-5, rtol=1e-5)
        assert (target_offsets[i][~positive] == 0).all()


def test_multibox_targets_reject_degenerate_ground_truth_and_bad_labels():
    anchors = B.anchor_boxes([(2, 2)], [(0.5,)], [(1.0,)])
    with pytest.raises(ValueError, match="zero-width"):
        B.multibox_targets(anchors, [torch.tensor([[0.1, 0.1, 0.1, 0.5]])], [torch.tensor([0])])
    with pytest.raises(ValueError, match="gt_labels"):
        B.multibox_targets(anchors, [torch.tensor([[0.1, 0.1, 0.3, 0.5]])], [torch.tensor([0.0])])


# ---------------------------------------------------------------------------------------------- loss
@pytest.mark.parametrize("seed", SEEDS)
def test_hard_negative_mining_keeps_the_highest_loss_negatives_three_per_positive(seed):
    g = torch.Generator().manual_seed(seed)
    loss = torch.rand(4, 50, generator=g)
    positive = torch.rand(4, 50, generator=g) < torch.tensor([[0.02], [0.1], [0.4], [0.0]])
    mask = B.hard_negative_mining(loss, positive, 3)
    for i in range(4):
        negatives = [a for a in range(50) if not positive[i, a]]
        count = min(3 * int(positive[i].sum()), len(negatives))
        chosen = sorted(negatives, key=lambda a: -loss[i, a].item())[:count]
        assert sorted(mask[i].nonzero().flatten().tolist()) == sorted(chosen)
    assert not (mask & positive).any()


@pytest.mark.parametrize("seed", SEEDS)
def test_multibox_loss_matches_a_per_anchor_loop(seed):
    g = torch.Generator().manual_seed(seed)
    batch, anchors, classes = 2, 30, 4
    logits = torch.randn(batch, anchors, classes + 1, generator=g)
    offsets = torch.randn(batch, anchors, 4, generator=g)
    labels = torch.where(torch.rand(batch, anchors, generator=g) < 0.15, torch.randint(1, classes + 1, (batch, anchors), generator=g), 0)
    targets = torch.randn(batch, anchors, 4, generator=g)
    classification, localisation = B.multibox_loss(logits, offsets, labels, targets, 3.0)
    cls_sum, loc_sum, num_pos = 0.0, 0.0, int((labels > 0).sum())
    for i in range(batch):
        pos = [a for a in range(anchors) if labels[i, a] > 0]
        background = [(-F.log_softmax(logits[i, a], -1)[0].item(), a) for a in range(anchors) if labels[i, a] == 0]
        neg = [a for _, a in sorted(background, key=lambda t: -t[0])[: 3 * len(pos)]]
        for a in pos + neg:
            cls_sum += -F.log_softmax(logits[i, a], -1)[labels[i, a]].item()
        for a in pos:
            loc_sum += F.smooth_l1_loss(offsets[i, a], targets[i, a], reduction="sum").item()
    assert classification.item() == pytest.approx(cls_sum / num_pos, rel=1e-5)
    assert localisation.item() == pytest.approx(loc_sum / num_pos, rel=1e-5)


def test_multibox_loss_is_differentiable_and_rejects_mismatched_shapes():
    logits = torch.randn(1, 10, 3, requires_grad=True)
    offsets = torch.randn(1, 10, 4, requires_grad=True)
    labels = torch.tensor([[1, 0, 0, 0, 2, 0, 0, 0, 0, 0]])
    cls, loc = B.multibox_loss(logits, offsets, labels, torch.zeros(1, 10, 4))
    (cls + loc).backward()
    assert logits.grad.abs().sum() > 0 and offsets.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="box_offsets"):
        B.multibox_loss(logits, offsets[:, :5], labels, torch.zeros(1, 10, 4))


# ---------------------------------------------------------------------------------------------- NMS
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("n", [1, 2, 50, 700])
@pytest.mark.parametrize("threshold", [0.0, 0.3, 0.5, 0.7, 1.0])
def test_nms_keeps_the_same_boxes_as_torchvision(seed, n, threshold):
    g = torch.Generator().manual_seed(seed)
    boxes = random_boxes(n, g)
    scores = torch.randperm(n, generator=g).float() / n  # distinct scores: the order is unambiguous
    assert torch.equal(B.nms(boxes, scores, threshold), tv.nms(boxes, scores, threshold))


@pytest.mark.parametrize("seed", SEEDS)
def test_nms_across_blocks_equals_torchvision(seed, monkeypatch):
    monkeypatch.setattr(B, "_NMS_BLOCK", 64)  # many small blocks: exercises suppression across blocks
    g = torch.Generator().manual_seed(seed)
    boxes = random_boxes(1000, g, size=150.0)
    scores = torch.rand(1000, generator=g)
    assert torch.equal(B.nms(boxes, scores, 0.45), tv.nms(boxes, scores, 0.45))


def test_nms_keeps_highest_scoring_box_of_each_cluster():
    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60], [51, 50, 61, 60], [0, 0, 10, 10.5]], dtype=torch.float32)
    scores = torch.tensor([0.6, 0.9, 0.3, 0.8, 0.1])
    assert B.nms(boxes, scores, 0.5).tolist() == [1, 3]


def test_nms_breaks_score_ties_by_lower_index_and_handles_empty_input():
    boxes = torch.tensor([[0.0, 0.0, 1.0, 1.0]] * 3)
    assert B.nms(boxes, torch.ones(3), 0.5).tolist() == [0]
    assert B.nms(torch.zeros(0, 4), torch.zeros(0), 0.5).tolist() == []
    with pytest.raises(ValueError, match="scores"):
        B.nms(boxes, torch.ones(2), 0.5)
    with pytest.raises(ValueError, match="iou_threshold"):
        B.nms(boxes, torch.ones(3), 1.5)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("n", [1, 30, 600])
def test_batched_nms_keeps_the_same_boxes_as_torchvision(seed, n):
    g = torch.Generator().manual_seed(seed)
    boxes = random_boxes(n, g)
    scores = torch.randperm(n, generator=g).float()
    idxs = torch.randint(0, 5, (n,), generator=g)
    assert torch.equal(B.batched_nms(boxes, scores, idxs, 0.5), tv.batched_nms(boxes, scores, idxs, 0.5))


@pytest.mark.parametrize("seed", SEEDS)
def test_batched_nms_across_blocks_and_many_categories_equals_torchvision(seed, monkeypatch):
    monkeypatch.setattr(B, "_NMS_BLOCK", 50)  # categories straddle block boundaries
    g = torch.Generator().manual_seed(seed)
    boxes = random_boxes(1500, g, size=60.0)
    scores = torch.rand(1500, generator=g)
    idxs = torch.randint(0, 40, (1500,), generator=g)
    assert torch.equal(B.batched_nms(boxes, scores, idxs, 0.4), tv.batched_nms(boxes, scores, idxs, 0.4))


def test_batched_nms_never_suppresses_across_classes():
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0]] * 2)
    assert B.batched_nms(boxes, torch.tensor([0.9, 0.8]), torch.tensor([0, 1]), 0.5).tolist() == [0, 1]
    assert B.batched_nms(boxes, torch.tensor([0.9, 0.8]), torch.tensor([1, 1]), 0.5).tolist() == [0]


# ---------------------------------------------------------------------------------------------- mAP
def test_average_precision_of_hand_computed_curves():
    # Detections: TP, FP, TP with 2 ground truths -> recall .5 .5 1, precision 1 .5 .667.
    recall = torch.tensor([0.5, 0.5, 1.0])
    precision = torch.tensor([1.0, 0.5, 2 / 3])
    assert B.average_precision(recall, precision, "all") == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    # 11-point: t = 0..0.5 -> 1 (6 points), t = 0.6..1 -> 2/3 (5 points).
    assert B.average_precision(recall, precision, "11point") == pytest.approx((6 + 5 * 2 / 3) / 11)
    assert B.average_precision(torch.zeros(0), torch.zeros(0)) == 0.0
    with pytest.raises(ValueError, match="method"):
        B.average_precision(recall, precision, "coco")


def voc_reference(preds, gts, num_classes, threshold, method):
    """PASCAL VOC's evaluation written as the devkit's loops (continuous coordinates)."""
    aps = []
    for c in range(num_classes):
        dets = [(float(s), i, b) for i, p in enumerate(preds) for b, s, l in zip(p["boxes"], p["scores"], p["labels"]) if l == c]
        dets.sort(key=lambda d: -d[0])  # Python's sort is stable, like ours
        npos = sum(int(l == c and not d) for g in gts for l, d in zip(g["labels"], g["difficult"]))
        claimed = {i: [False] * len(g["labels"]) for i, g in enumerate(gts)}
        tp, fp = [], []
        for _, i, box in dets:
            best, best_j = -1.0, -1
            for j, (gb, gl) in enumerate(zip(gts[i]["boxes"], gts[i]["labels"])):
                if gl != c:
                    continue
                ov = tv.box_iou(box[None], gb[None]).item()
                if ov > best:
                    best, best_j = ov, j
            if best >= threshold:
                if gts[i]["difficult"][best_j]:
                    continue
                if not claimed[i][best_j]:
                    claimed[i][best_j] = True
                    tp.append(1), fp.append(0)
                else:
                    tp.append(0), fp.append(1)
            else:
                tp.append(0), fp.append(1)
        if npos == 0:
            continue
        ctp = torch.tensor(tp, dtype=torch.float64).cumsum(0)
        cfp = torch.tensor(fp, dtype=torch.float64).cumsum(0)
        rec, prec = (ctp / npos).tolist(), (ctp / (ctp + cfp)).tolist()
        if method == "11point":
            ap = sum(max([p for r, p in zip(rec, prec) if r >= t / 10 - 1e-12], default=0.0) for t in range(11)) / 11
        else:
            mrec, mpre = [0.0] + rec + [1.0], [0.0] + prec + [0.0]
            for k in range(len(mpre) - 2, -1, -1):
                mpre[k] = max(mpre[k], mpre[k + 1])
            ap = sum((mrec[k + 1] - mrec[k]) * mpre[k + 1] for k in range(len(mrec) - 1) if mrec[k + 1] != mrec[k])
        aps.append(ap)
    return sum(aps) / len(aps)


def random_detection_problem(g, num_images=12, num_classes=4, difficult_rate=0.0):
    """Ground truth per image, and detections: jittered copies (some duplicated), plus clutter."""
    preds, gts = [], []
    for _ in range(num_images):
        k = int(torch.randint(0, 6, (1,), generator=g))
        gt = random_boxes(k, g, size=100.0, max_side=30.0, min_side=10.0)
        labels = torch.randint(0, num_classes, (k,), generator=g)
        difficult = torch.rand(k, generator=g) < difficult_rate
        copies = torch.randint(0, 3, (k,), generator=g)  # 0, 1 or 2 detections per object
        src = torch.repeat_interleave(torch.arange(k), copies)
        jitter = torch.randn(len(src), 4, generator=g) * 2.5
        det = gt[src] + jitter
        det = torch.cat((det[:, :2].minimum(det[:, 2:] - 1), det[:, 2:]), dim=1)
        det_labels = labels[src].clone()
        flip = torch.rand(len(src), generator=g) < 0.1
        det_labels[flip] = torch.randint(0, num_classes, (int(flip.sum()),), generator=g)
        clutter = int(torch.randint(0, 4, (1,), generator=g))
        det = torch.cat((det, random_boxes(clutter, g, size=100.0, max_side=30.0)))
        det_labels = torch.cat((det_labels, torch.randint(0, num_classes, (clutter,), generator=g)))
        scores = torch.rand(len(det), generator=g)
        preds.append({"boxes": det, "scores": scores, "labels": det_labels})
        gts.append({"boxes": gt, "labels": labels, "difficult": difficult})
    return preds, gts


def run_map(preds, gts, **kwargs):
    return B.mean_average_precision(
        [p["boxes"] for p in preds], [p["scores"] for p in preds], [p["labels"] for p in preds],
        [g["boxes"] for g in gts], [g["labels"] for g in gts], [g["difficult"] for g in gts], **kwargs,
    )


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("method", B.AP_METHODS)
@pytest.mark.parametrize("difficult_rate", [0.0, 0.3])
def test_map_matches_the_voc_brute_force_reference(seed, method, difficult_rate):
    g = torch.Generator().manual_seed(seed)
    preds, gts = random_detection_problem(g, difficult_rate=difficult_rate)
    ours = run_map(preds, gts, num_classes=4, method=method)
    assert ours.map == pytest.approx(voc_reference(preds, gts, 4, 0.5, method), abs=1e-9)


@pytest.mark.parametrize("seed", SEEDS)
def test_map_agrees_with_torchmetrics_at_iou_half_within_the_interpolation_difference(seed):
    from torchmetrics.detection import MeanAveragePrecision

    g = torch.Generator().manual_seed(seed)
    preds, gts = random_detection_problem(g, num_images=40)
    metric = MeanAveragePrecision(iou_thresholds=[0.5], class_metrics=True)
    metric.update(preds, [{"boxes": t["boxes"], "labels": t["labels"]} for t in gts])
    reference = metric.compute()
    ours = run_map(preds, gts, num_classes=4)
    # COCO samples the envelope at 101 recall points and matches greedily among unclaimed boxes;
    # VOC integrates the envelope exactly: the two differ by about 1/101 per class at most.
    assert 0.2 < ours.map < 0.9  # a problem where the two could disagree
    assert ours.map == pytest.approx(float(reference["map"]), abs=0.01)
    classes = reference["classes"].tolist()
    for c, ap in zip(classes, reference["map_per_class"].tolist()):
        assert ours.ap[c].item() == pytest.approx(ap, abs=0.015)


def test_map_is_one_for_perfect_detections_and_zero_without_detections():
    gt = [torch.tensor([[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 30.0, 35.0]])]
    labels = [torch.tensor([0, 1])]
    perfect = B.mean_average_precision(gt, [torch.tensor([0.9, 0.8])], labels, gt, labels)
    assert perfect.map == 1.0 and perfect.ap.tolist() == [1.0, 1.0]
    empty = B.mean_average_precision([torch.zeros(0, 4)], [torch.zeros(0)], [torch.zeros(0, dtype=torch.long)], gt, labels)
    assert empty.map == 0.0


def test_map_skips_classes_without_ground_truth_and_counts_each_object_once():
    gt = [torch.tensor([[0.0, 0.0, 10.0, 10.0]])]
    # Two detections of the same object: the second is a false positive; class 2 has no ground truth.
    pred = [torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.5, 0.0, 10.0, 10.0], [40.0, 40.0, 50.0, 50.0]])]
    result = B.mean_average_precision(pred, [torch.tensor([0.9, 0.8, 0.7])], [torch.tensor([0, 0, 2])], gt, [torch.tensor([0])], num_classes=3)
    assert result.ap[0].item() == 1.0  # the duplicate comes after full recall
    assert math.isnan(result.ap[1].item()) and math.isnan(result.ap[2].item())
    assert result.map == 1.0
    assert result.precision[0].tolist() == [1.0, 0.5] and result.recall[0].tolist() == [1.0, 1.0]


def test_map_ignores_detections_of_difficult_objects():
    gt = [torch.tensor([[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0]])]
    pred = [torch.tensor([[20.0, 20.0, 30.0, 30.0], [0.0, 0.0, 10.0, 10.0]])]
    result = B.mean_average_precision(
        pred, [torch.tensor([0.9, 0.5])], [torch.tensor([0, 0])], gt, [torch.tensor([0, 0])], [torch.tensor([False, True])]
    )
    assert result.num_ground_truth.tolist() == [1]
    assert result.map == 1.0


def test_map_rejects_mismatched_lists_and_out_of_range_labels():
    box = [torch.tensor([[0.0, 0.0, 1.0, 1.0]])]
    with pytest.raises(ValueError, match="one entry per image"):
        B.mean_average_precision(box, [torch.ones(1)], [torch.zeros(1, dtype=torch.long)], box * 2, [torch.zeros(1, dtype=torch.long)] * 2)
    with pytest.raises(ValueError, match="num_classes"):
        B.mean_average_precision(box, [torch.ones(1)], [torch.tensor([5])], box, [torch.tensor([0])], num_classes=2)
    with pytest.raises(ValueError, match="pred_scores"):
        B.mean_average_precision(box, [torch.ones(2)], [torch.tensor([0])], box, [torch.tensor([0])])
