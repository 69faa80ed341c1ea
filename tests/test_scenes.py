"""Specifications of helpers.data.scenes: boxes, instance and semantic masks that agree exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision
from torch.utils.data import DataLoader

from helpers.data import scenes as sc


@pytest.fixture(scope="module")
def scenes():
    return sc.make_scenes(96, 64, seed=11)


def label_map(scenes, i):
    """Class + 1 where each instance is visible, 0 elsewhere: the semantic mask without its band."""
    out = torch.zeros(scenes.images.shape[-2:], dtype=torch.uint8)
    for mask, label in zip(scenes.instance_masks[i], scenes.labels[i]):
        out[mask] = label.to(torch.uint8) + 1
    return out


def test_scenes_have_the_documented_types_and_shapes(scenes):
    n = len(scenes)
    assert scenes.images.shape == (n, 3, 64, 64) and scenes.images.dtype == torch.uint8
    assert scenes.semantic_masks.shape == (n, 64, 64) and scenes.semantic_masks.dtype == torch.uint8
    assert len(scenes.boxes) == len(scenes.labels) == len(scenes.instance_masks) == n
    for boxes, labels, masks in zip(scenes.boxes, scenes.labels, scenes.instance_masks):
        k = labels.shape[0]
        assert boxes.shape == (k, 4) and boxes.dtype == torch.float32
        assert labels.dtype == torch.int64 and masks.shape == (k, 64, 64) and masks.dtype == torch.bool
    assert len(sc.CLASS_NAMES) == 10


def test_every_box_is_the_tight_extent_of_its_visible_mask(scenes):
    for boxes, masks in zip(scenes.boxes, scenes.instance_masks):
        # torchvision's boxes cover pixel indices; ours are pixel edges, one past the last pixel
        expected = torchvision.ops.masks_to_boxes(masks) + torch.tensor([0.0, 0.0, 1.0, 1.0])
        assert torch.equal(boxes, expected)


def test_class_ids_are_digits_and_object_counts_within_bounds(scenes):
    counts = torch.tensor([len(lab) for lab in scenes.labels])
    assert int(counts.min()) >= 1 and int(counts.max()) <= 6
    every = torch.cat(scenes.labels)
    assert int(every.min()) >= 0 and int(every.max()) <= 9
    assert len(torch.unique(every)) == 10


def test_no_labelled_object_is_fully_hidden_and_instances_do_not_overlap(scenes):
    for masks in scenes.instance_masks:
        assert torch.all(masks.flatten(1).sum(1) > 0)
        assert int(masks.sum(0).max(), ) <= 1


def test_objects_partially_occlude_each_other_somewhere(scenes):
    """Some boxes overlap: the default scenes include partial occlusion, not only isolated digits."""
    overlapping = 0
    for boxes in scenes.boxes:
        if len(boxes) > 1:
            iou = torchvision.ops.box_iou(boxes, boxes).fill_diagonal_(0)
            overlapping += int((iou > 0.05).any())
    assert overlapping >= 5


def test_semantic_mask_is_the_instance_labels_outside_the_ignore_band(scenes):
    for i in range(len(scenes)):
        semantic = scenes.semantic_masks[i]
        expected = label_map(scenes, i)
        keep = semantic != sc.IGNORE_INDEX
        assert torch.equal(semantic[keep], expected[keep])
    assert int((scenes.semantic_masks == sc.IGNORE_INDEX).sum()) > 0


def test_ignore_band_lies_just_outside_objects_and_zero_disables_it():
    plain = sc.make_scenes(16, 48, seed=5, ignore_band=0)
    banded = sc.make_scenes(16, 48, seed=5, ignore_band=1)
    assert torch.equal(plain.images, banded.images)
    assert not bool((plain.semantic_masks == sc.IGNORE_INDEX).any())
    for i in range(16):
        assert torch.equal(plain.semantic_masks[i], label_map(plain, i))
        band = banded.semantic_masks[i] == sc.IGNORE_INDEX
        objects = (label_map(banded, i) > 0).float()[None, None]
        near = torch.nn.functional.max_pool2d(objects, 3, stride=1, padding=1)[0, 0] > 0
        assert bool((band <= near).all())  # every ignored pixel touches an object


def test_scenes_are_deterministic_per_seed_and_stream():
    a = sc.make_scenes(8, 32, seed=3)
    b = sc.make_scenes(8, 32, seed=3)
    c = sc.make_scenes(8, 32, seed=4)
    d = sc.make_scenes(8, 32, seed=3, stream=1)
    assert torch.equal(a.images, b.images) and torch.equal(a.semantic_masks, b.semantic_masks)
    assert all(torch.equal(x, y) for x, y in zip(a.boxes, b.boxes))
    assert not torch.equal(a.images, c.images) and not torch.equal(a.images, d.images)


def test_image_size_is_a_parameter_and_boxes_stay_inside_the_image():
    big = sc.make_scenes(6, 80, seed=1)
    assert big.images.shape == (6, 3, 80, 80)
    for boxes in big.boxes:
        assert torch.all(boxes[:, :2] >= 0) and torch.all(boxes[:, 2:] <= 80)
        assert torch.all(boxes[:, 2:] > boxes[:, :2])


def test_objects_sizes_follow_the_object_size_parameter():
    small = sc.make_scenes(32, 64, seed=2, object_size=(0.1, 0.15), distractors=(0, 0))
    large = sc.make_scenes(32, 64, seed=2, object_size=(0.4, 0.5), distractors=(0, 0))
    h_small = torch.cat([b[:, 3] - b[:, 1] for b in small.boxes])
    h_large = torch.cat([b[:, 3] - b[:, 1] for b in large.boxes])
    assert float(h_small.median()) < 12 and float(h_large.median()) > 20


def test_min_objects_is_respected_even_with_heavy_occlusion():
    crowded = sc.make_scenes(32, 32, seed=0, min_objects=3, max_objects=6, object_size=(0.4, 0.6))
    assert min(len(lab) for lab in crowded.labels) >= 3


def test_zero_scenes_and_sub_batches():
    empty = sc.make_scenes(0, 32)
    assert len(empty) == 0 and empty.images.shape == (0, 3, 32, 32)
    some = sc.make_scenes(5, 32, seed=1)
    sub = some[1:3]
    assert len(sub) == 2 and torch.equal(sub.images, some.images[1:3])
    assert torch.equal(sub.boxes[0], some.boxes[1])


@pytest.mark.parametrize(
    "kwargs, error, words",
    [
        (dict(num_scenes=-2), ValueError, "num_scenes"),
        (dict(num_scenes=2, min_objects=4, max_objects=2), ValueError, "min_objects"),
        (dict(num_scenes=2, image_size=8), ValueError, "image_size"),
        (dict(num_scenes=2, object_size=(0.5, 0.2)), ValueError, "object_size"),
        (dict(num_scenes=2, distractors=3), TypeError, "distractors"),
        (dict(num_scenes=2, ignore_band=-1), ValueError, "ignore_band"),
    ],
)
def test_make_scenes_rejects_bad_arguments_by_name(kwargs, error, words):
    with pytest.raises(error, match=words):
        sc.make_scenes(**kwargs)


def test_masks_to_boxes_matches_torchvision_plus_one_and_zeros_empty_masks():
    gen = torch.Generator().manual_seed(0)
    masks = torch.rand(20, 10, 12, generator=gen) > 0.9
    masks[3] = False
    boxes = sc.masks_to_boxes(masks)
    nonempty = masks.flatten(1).any(1)
    expected = torchvision.ops.masks_to_boxes(masks[nonempty]) + torch.tensor([0.0, 0.0, 1.0, 1.0])
    assert torch.equal(boxes[nonempty], expected)
    assert torch.equal(boxes[3], torch.zeros(4))
    single = torch.zeros(1, 5, 5, dtype=torch.bool)
    single[0, 2, 3] = True
    assert sc.masks_to_boxes(single).tolist() == [[3.0, 2.0, 4.0, 3.0]]


def test_cached_scenes_equal_fresh_ones(tmp_path):
    fresh = sc.make_scenes(10, 32, seed=6)
    first = sc.make_scenes(10, 32, seed=6, cache=tmp_path)
    again = sc.make_scenes(10, 32, seed=6, cache=tmp_path)
    assert len(list(tmp_path.rglob("*.pt"))) == 1
    for other in (first, again):
        assert torch.equal(other.images, fresh.images)
        assert all(torch.equal(x, y) for x, y in zip(other.instance_masks, fresh.instance_masks))


def test_scene_dataset_returns_torchvision_detection_targets(scenes):
    data = sc.SceneDataset(scenes)
    image, target = data[0]
    assert len(data) == len(scenes)
    assert image.shape == (3, 64, 64) and image.dtype == torch.float32 and float(image.max()) <= 1
    assert set(target) == {"boxes", "labels", "masks", "semantic_mask"}
    assert torch.equal(target["boxes"].as_subclass(torch.Tensor), scenes.boxes[0])
    raw, _ = sc.SceneDataset(scenes, dtype=torch.uint8)[0]
    assert torch.equal(raw.as_subclass(torch.Tensor), scenes.images[0])


def test_transforms_v2_move_boxes_and_masks_together(scenes):
    from torchvision.transforms import v2

    data = sc.SceneDataset(scenes, transform=v2.RandomHorizontalFlip(p=1.0))
    for i in range(5):
        image, target = data[i]
        assert torch.equal(image.as_subclass(torch.Tensor), scenes.images[i].flip(-1).float() / 255)
        expected = sc.masks_to_boxes(target["masks"].as_subclass(torch.Tensor))
        assert torch.equal(target["boxes"].as_subclass(torch.Tensor), expected)


def test_collate_stacks_images_and_keeps_targets_per_image(scenes):
    loader = DataLoader(sc.SceneDataset(scenes), batch_size=8, collate_fn=sc.collate)
    images, targets = next(iter(loader))
    assert images.shape == (8, 3, 64, 64) and len(targets) == 8
    assert torch.equal(targets[2]["labels"], scenes.labels[2])
    with pytest.raises(ValueError, match="batch"):
        sc.collate([])


def test_streaming_scenes_draw_fresh_scenes_each_epoch():
    stream = sc.StreamingScenes(6, 32, seed=2)
    first = torch.stack([image for image, _ in stream])
    second = torch.stack([image for image, _ in stream])
    assert first.shape == (6, 3, 32, 32) and len(stream) == 6
    assert not torch.equal(first, second)
    assert torch.equal(first, stream.epoch_scenes(0).images.float() / 255)
    assert torch.equal(second, sc.make_scenes(6, 32, seed=2, stream=1).images.float() / 255)
    stream.set_epoch(0)
    assert torch.equal(torch.stack([image for image, _ in stream]), first)


def test_streaming_scenes_pass_their_arguments_and_reject_unknown_ones():
    stream = sc.StreamingScenes(4, 32, seed=0, max_objects=1, distractors=(0, 0))
    assert all(len(target["labels"]) == 1 for _, target in stream)
    with pytest.raises(TypeError, match="unknown"):
        sc.StreamingScenes(4, 32, colour="red")
    with pytest.raises(ValueError, match="max_objects"):
        sc.StreamingScenes(4, 32, max_objects=0)


def test_streaming_scenes_split_chunks_between_dataloader_workers():
    stream = sc.StreamingScenes(300, 16, seed=1)
    loader = DataLoader(stream, batch_size=50, num_workers=2, collate_fn=sc.collate)
    seen = torch.cat([images for images, _ in loader])
    expected = sc.make_scenes(300, 16, seed=1).images.float() / 255
    assert seen.shape == expected.shape
    # the same scenes, whichever worker made them
    assert torch.equal(seen.flatten(1).sum(1).sort().values, expected.flatten(1).sum(1).sort().values)


def test_scene_batches_cover_every_scene_once_with_padded_targets(scenes):
    batches = list(sc.scene_batches(scenes, batch_size=40, shuffle=True, seed=0))
    assert [b["images"].shape[0] for b in batches] == [40, 40, 16]
    k = max(len(lab) for lab in scenes.labels)
    assert batches[0]["boxes"].shape == (40, k, 4) and batches[0]["labels"].shape == (40, k)
    total = sum(int((b["labels"] >= 0).sum()) for b in batches)
    assert total == sum(len(lab) for lab in scenes.labels)
    seen = torch.cat([b["images"] for b in batches]).flatten(1).sum(1).sort().values
    assert torch.allclose(seen, (scenes.images.float() / 255).flatten(1).sum(1).sort().values)
    dropped = list(sc.scene_batches(scenes, batch_size=40, drop_last=True))
    assert len(dropped) == 2


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_scenes_drawn_on_the_gpu_match_the_cpu():
    cpu = sc.make_scenes(32, 64, seed=9)
    gpu = sc.make_scenes(32, 64, seed=9, device="cuda")
    assert gpu.images.is_cuda
    assert float((gpu.images.cpu().float() - cpu.images.float()).abs().mean()) < 0.5
    same = sum(torch.equal(a.cpu(), b) for a, b in zip(gpu.labels, cpu.labels))
    assert same >= 30  # a pixel at exactly 0.5 coverage can flip on another device


# ----------------------------------------------------------------------------- pictures (helpers.plotting)

def test_show_labelled_images_titles_right_in_green_and_wrong_in_red():
    import matplotlib.pyplot as plt

    from helpers.plotting import show_labelled_images

    images = torch.zeros(3, 1, 8, 8, dtype=torch.uint8)
    fig = show_labelled_images(images, torch.tensor([1, 2, 3]), sc.CLASS_NAMES, predictions=torch.tensor([1, 5, 3]))
    titles = [(ax.get_title(), ax.title.get_color()) for ax in fig.axes if ax.get_title()]
    assert titles == [("one (one)", "green"), ("five (two)", "red"), ("three (three)", "green")]
    with pytest.raises(ValueError, match="predictions"):
        show_labelled_images(images, [1, 2, 3], predictions=[1])
    plt.close("all")


def test_draw_boxes_puts_pixel_edge_boxes_on_pixel_centred_axes_with_captions():
    import matplotlib.pyplot as plt

    from helpers.plotting import draw_boxes

    fig, ax = plt.subplots()
    ax.imshow(torch.zeros(10, 10).numpy())
    draw_boxes(ax, torch.tensor([[2.0, 3.0, 6.0, 9.0]]), torch.tensor([7]), torch.tensor([0.904]), sc.CLASS_NAMES)
    (rect,) = ax.patches
    assert rect.get_xy() == (1.5, 2.5) and rect.get_width() == 4.0 and rect.get_height() == 6.0
    assert [t.get_text() for t in ax.texts] == ["seven 0.90"]
    with pytest.raises(ValueError, match="scores"):
        draw_boxes(ax, torch.zeros(2, 4), torch.tensor([1, 2]), torch.tensor([0.5]))
    plt.close("all")


def test_overlay_mask_leaves_background_paints_classes_and_whitens_ignore():
    from helpers.plotting import class_colours, overlay_mask

    image = torch.zeros(3, 2, 2, dtype=torch.uint8)
    mask = torch.tensor([[0, 1], [255, 2]])
    out = overlay_mask(image, mask, num_classes=3, alpha=1.0)
    colours = class_colours(3)
    assert out.shape == (2, 2, 3)
    assert np.allclose(out[0, 0], 0) and np.allclose(out[0, 1], colours[1]) and np.allclose(out[1, 1], colours[2])
    assert np.allclose(out[1, 0], 1.0)
    with pytest.raises(ValueError, match="mask"):
        overlay_mask(image, torch.zeros(3, 3), num_classes=3)


def test_show_detections_and_show_masks_draw_one_panel_per_image(scenes):
    import matplotlib.pyplot as plt

    from helpers.plotting import show_detections, show_masks

    fig = show_detections(scenes.images[:3], scenes.boxes[:3], scenes.labels[:3], class_names=sc.CLASS_NAMES,
                          ground_truth=(scenes.boxes[:3], scenes.labels[:3]))
    drawn = [ax for ax in fig.axes if ax.images]
    assert len(drawn) == 3
    assert len(drawn[0].patches) == 2 * len(scenes.boxes[0])  # truth dashed + predictions
    fig = show_masks(scenes.images[:2], scenes.semantic_masks[:2], 11, predictions=scenes.semantic_masks[:2],
                     class_names=["background", *sc.CLASS_NAMES])
    assert len([ax for ax in fig.axes if ax.images]) == 4
    with pytest.raises(ValueError, match="boxes"):
        show_detections(scenes.images[:2], scenes.boxes[:1])
    plt.close("all")


def test_worker_processes_draw_the_same_scenes():
    one = sc.make_scenes(300, 16, seed=8)
    two = sc.make_scenes(300, 16, seed=8, workers=2)
    assert torch.equal(one.images, two.images) and torch.equal(one.semantic_masks, two.semantic_masks)
    assert all(torch.equal(a, b) for a, b in zip(one.boxes, two.boxes))


def test_picture_helpers_put_the_title_above_the_grid(scenes):
    import matplotlib.pyplot as plt

    from helpers.plotting import show_detections, show_labelled_images, show_masks

    figures = [
        show_labelled_images(scenes.images[:2], scenes.labels[0][:1].repeat(2), title="grid"),
        show_detections(scenes.images[:2], scenes.boxes[:2], scenes.labels[:2], title="grid"),
        show_masks(scenes.images[:2], scenes.semantic_masks[:2], 11, predictions=scenes.semantic_masks[:2], title="grid"),
    ]
    for fig in figures:
        assert fig._suptitle is not None and fig._suptitle.get_text() == "grid"
        fig.canvas.draw()
        title_bottom = fig._suptitle.get_window_extent().y0
        assert all(ax.get_window_extent().y1 <= title_bottom + 1 for ax in fig.axes if ax.images)
    plt.close("all")
