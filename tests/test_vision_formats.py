"""Specifications of helpers.data.vision_formats, on the small real-format files in data/fixtures/vision/."""

from __future__ import annotations

import shutil
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from helpers.data import vision_formats as vf

FIXTURES = Path(__file__).resolve().parents[1] / "data" / "fixtures" / "vision"


# ----------------------------------------------------------------------------- torchvision data sets

def test_cifar10_reads_the_python_batches_channel_first():
    images, labels, classes = vf.load_torchvision("cifar10", FIXTURES, train=False, download=False, check_integrity=False)
    assert images.shape == (3, 3, 32, 32) and images.dtype == torch.uint8
    assert labels.tolist() == [3, 5, 9] and classes[0] == "airplane" and len(classes) == 10
    # the fixture's first test image is pure red
    assert int(images[0, 0].min()) == 255 and int(images[0, 1:].max()) == 0
    train, train_labels, _ = vf.load_torchvision("cifar10", FIXTURES, train=True, download=False, check_integrity=False)
    assert train.shape == (10, 3, 32, 32) and train_labels.tolist() == list(range(10))


def test_cifar10_with_checksums_refuses_hand_made_files_with_a_clear_message():
    with pytest.raises(FileNotFoundError, match="cifar-10-python.tar.gz"):
        vf.load_torchvision("cifar10", FIXTURES, download=False)


@pytest.mark.parametrize("name, folder", [("mnist", "MNIST"), ("fashion-mnist", "FashionMNIST")])
def test_mnist_family_reads_idx_files_as_one_channel_images(name, folder):
    images, labels, classes = vf.load_torchvision(name, FIXTURES, train=True, download=False)
    assert images.shape == (4, 1, 28, 28) and images.dtype == torch.uint8
    assert labels.tolist() == [0, 1, 2, 3] and len(classes) == 10
    for k in range(4):  # image k is a white line at row 4 + k
        assert images[k, 0, 4 + k].tolist() == [255] * 28 and int(images[k].sum()) == 255 * 28
    test_images, test_labels, _ = vf.load_torchvision(name, FIXTURES, train=False, download=False)
    assert test_images.shape == (2, 1, 28, 28) and test_labels.tolist() == [7, 9]


@pytest.mark.parametrize("name, words", [("cifar10", "cifar-10-batches-py"), ("mnist", "MNIST/raw"),
                                         ("fashion-mnist", "FashionMNIST/raw")])
def test_missing_files_offline_say_what_to_download_and_where(tmp_path, name, words):
    with pytest.raises(FileNotFoundError) as info:
        vf.load_torchvision(name, tmp_path, download=False)
    message = str(info.value)
    assert words in message and str(tmp_path) in message and "Download" in message


def test_a_failed_download_gives_the_same_clear_message(tmp_path, monkeypatch):
    import torchvision.datasets.utils as tvu

    def no_network(*args, **kwargs):
        raise urllib.error.URLError("network is unreachable")

    monkeypatch.setattr(tvu, "urlopen", no_network, raising=False)
    monkeypatch.setattr(tvu, "download_url", no_network)
    monkeypatch.setattr(tvu, "download_and_extract_archive", no_network)
    import torchvision.datasets.mnist as tvm

    monkeypatch.setattr(tvm, "download_and_extract_archive", no_network)
    with pytest.raises(FileNotFoundError, match="downloading failed"):
        vf.load_torchvision("mnist", tmp_path, download=True)


def test_unknown_torchvision_name_is_rejected():
    with pytest.raises(ValueError, match="name"):
        vf.load_torchvision("imagenet", FIXTURES)


# ----------------------------------------------------------------------------- .lst and folders

def test_lst_file_lists_images_and_labels_in_order():
    images, labels, paths = vf.read_lst(FIXTURES / "lst" / "train.lst")
    assert labels.tolist() == [3, 0, 7] and paths == ["images/img0.png", "images/img1.png", "images/img2.png"]
    assert [tuple(img.shape) for img in images] == [(3, 10, 12), (3, 9, 9), (3, 14, 10)]
    reference = np.asarray(Image.open(FIXTURES / "lst" / "images" / "img0.png").convert("RGB"))
    np.testing.assert_array_equal(images[0].permute(1, 2, 0).numpy(), reference)


def test_lst_with_image_size_stacks_resized_images():
    images, labels, _ = vf.read_lst(FIXTURES / "lst" / "train.lst", image_size=8)
    assert images.shape == (3, 3, 8, 8) and images.dtype == torch.uint8


def test_lst_with_several_label_columns_is_multi_label():
    _, labels, _ = vf.read_lst(FIXTURES / "lst" / "multilabel.lst")
    assert labels.dtype == torch.float32 and labels.tolist() == [[1, 0, 1], [0, 1, 0]]


@pytest.mark.parametrize(
    "name, words",
    [("bad_columns.lst", "line 2: expected index<TAB>label<TAB>path"),
     ("bad_label.lst", "line 1: labels must be numbers"),
     ("missing_image.lst", "nowhere.png: image file not found")],
)
def test_malformed_lst_files_name_the_file_and_the_problem(name, words):
    with pytest.raises(vf.DataFormatError, match=words):
        vf.read_lst(FIXTURES / "lst" / name)


def test_image_folder_gives_sorted_classes_and_their_images():
    images, labels, classes = vf.read_image_folder(FIXTURES / "folders")
    assert classes == ["cat", "dog"] and labels.tolist() == [0, 1, 1]
    assert all(img.shape == (3, 8, 8) for img in images)


def test_image_folder_rejects_a_file_that_is_not_an_image():
    with pytest.raises(vf.DataFormatError, match="notes.txt: not an image file"):
        vf.read_image_folder(FIXTURES / "folders_bad")


def test_missing_folders_raise_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="root"):
        vf.read_image_folder(tmp_path / "nothing")
    with pytest.raises(vf.DataFormatError, match="sub-folder"):
        vf.read_image_folder(tmp_path)


# ----------------------------------------------------------------------------- detection

def test_voc_detection_converts_one_based_inclusive_boxes_and_keeps_difficult_flags():
    records, names = vf.read_voc_detection(FIXTURES / "voc", split="trainval")
    assert names == vf.VOC_CLASSES and len(records) == 2
    first = records[0]
    assert first["image"].shape == (3, 16, 20)
    assert first["boxes"].tolist() == [[0.0, 0.0, 10.0, 8.0], [4.0, 5.0, 20.0, 16.0]]
    assert [names[i] for i in first["labels"]] == ["dog", "person"]
    assert first["difficult"].tolist() == [False, True]
    easy, _ = vf.read_voc_detection(FIXTURES / "voc", split="trainval", keep_difficult=False)
    assert easy[0]["labels"].tolist() == [vf.VOC_CLASSES.index("dog")]


def test_voc_detection_resizes_images_and_scales_boxes():
    records, _ = vf.read_voc_detection(FIXTURES / "voc", split="trainval", image_size=40)
    assert records[0]["image"].shape == (3, 40, 40)
    assert records[0]["boxes"][0].tolist() == [0.0, 0.0, 20.0, 20.0]


@pytest.mark.parametrize(
    "split, words",
    [("bad_box", "000003.xml: object 1 \\(dog\\): box .* outside"),
     ("bad_class", "000004.xml: object 1: unknown class 'unicorn'"),
     ("missing", "000005.xml: annotation missing"),
     ("bad_size", "000006.xml: <size> says 30x16 but 000006.jpg is 20x16")],
)
def test_malformed_voc_annotations_name_the_file_and_the_problem(split, words):
    with pytest.raises(vf.DataFormatError, match=words):
        vf.read_voc_detection(FIXTURES / "voc", split=split)


def test_sagemaker_detection_json_gives_xyxy_boxes_and_category_names():
    records, names = vf.read_sagemaker_detection(FIXTURES / "sagemaker_detection" / "train")
    assert names == ["zero", "one", "two"] and len(records) == 2
    a = records[0]
    assert Path(a["file"]).name == "a.jpg" and a["image"].shape == (3, 18, 24)
    assert a["boxes"].tolist() == [[1.0, 2.0, 6.0, 6.0], [10.0, 3.0, 16.0, 12.0]]
    assert a["labels"].tolist() == [0, 2] and a["difficult"].tolist() == [False, False]
    assert records[1]["boxes"].tolist() == [[0.0, 0.0, 24.0, 18.0]]  # a box may fill the image exactly


@pytest.mark.parametrize(
    "channel, kwargs, words",
    [("bad_box", {}, "a.json: annotation 1: box left=20 .* outside the 24x18 image"),
     ("bad_class", {"num_classes": 3}, "a.json: annotation 1: unknown class_id 7"),
     ("bad_size", {}, 'a.json: "image_size" says 30x18 but a.jpg is 24x18'),
     ("missing", {}, "b.jpg: no annotation b.json"),
     ("bad_json", {}, "a.json: not valid JSON")],
)
def test_malformed_sagemaker_detection_names_the_file_and_the_problem(channel, kwargs, words):
    with pytest.raises(vf.DataFormatError, match=words):
        vf.read_sagemaker_detection(FIXTURES / "sagemaker_detection" / channel, **kwargs)


def test_sagemaker_detection_round_trips_a_scene(tmp_path):
    """Our own scenes written in SageMaker's JSON format read back to the same boxes and labels."""
    import json

    from helpers.data.scenes import make_scenes

    scenes = make_scenes(3, 32, seed=0)
    (tmp_path / "train").mkdir()
    (tmp_path / "train_annotation").mkdir()
    for i in range(3):
        Image.fromarray(scenes.images[i].permute(1, 2, 0).numpy()).save(tmp_path / "train" / f"s{i}.png")
        anns = [{"class_id": int(c), "left": float(b[0]), "top": float(b[1]), "width": float(b[2] - b[0]),
                 "height": float(b[3] - b[1])} for b, c in zip(scenes.boxes[i], scenes.labels[i])]
        doc = {"file": f"s{i}.png", "image_size": [{"width": 32, "height": 32, "depth": 3}], "annotations": anns}
        (tmp_path / "train_annotation" / f"s{i}.json").write_text(json.dumps(doc))
    records, _ = vf.read_sagemaker_detection(tmp_path / "train", num_classes=10)
    for i, record in enumerate(records):
        assert torch.equal(record["boxes"], scenes.boxes[i]) and torch.equal(record["labels"], scenes.labels[i])
        assert torch.equal(record["image"], scenes.images[i])


# ----------------------------------------------------------------------------- segmentation

def test_sagemaker_segmentation_reads_palette_indices_not_colours():
    records = vf.read_sagemaker_segmentation(FIXTURES / "sagemaker_segmentation", "train", num_classes=3)
    assert len(records) == 2
    mask = records[0]["mask"]
    assert mask.dtype == torch.uint8 and mask.shape == (12, 16) and records[0]["image"].shape == (3, 12, 16)
    assert sorted(torch.unique(mask).tolist()) == [0, 1, 2, 255]
    assert int((mask == 1).sum()) == 4 * 6 and mask[6].tolist() == [255] * 16


def test_sagemaker_segmentation_label_map_scale_divides_values_and_keeps_ignore():
    train = vf.read_sagemaker_segmentation(FIXTURES / "sagemaker_segmentation", "train")
    val = vf.read_sagemaker_segmentation(FIXTURES / "sagemaker_segmentation", "validation", num_classes=3)
    assert torch.equal(val[0]["mask"], train[0]["mask"])


def test_sagemaker_segmentation_label_map_map_remaps_and_rejects_unlisted_values(tmp_path):
    root = tmp_path / "seg"
    shutil.copytree(FIXTURES / "sagemaker_segmentation", root)
    (root / "label_map" / "train_label_map.json").write_text('{"map": {"0": 0, "1": 2, "2": 1}}')
    swapped = vf.read_sagemaker_segmentation(root, "train")
    original = vf.read_sagemaker_segmentation(FIXTURES / "sagemaker_segmentation", "train")
    assert torch.equal(swapped[0]["mask"], original[1]["mask"])
    (root / "label_map" / "train_label_map.json").write_text('{"map": {"0": 0, "1": 1}}')
    with pytest.raises(vf.DataFormatError, match=r"p.png: mask values \[2\] are not in the label map"):
        vf.read_sagemaker_segmentation(root, "train")


@pytest.mark.parametrize(
    "channel, words",
    [("bad_size", "s.png: mask is 16x10 but s.jpg is 16x12"),
     ("bad_mode", "s.png: expected a single-channel PNG mask \\(mode P or L\\), got mode RGB"),
     ("bad_class", r"s.png: unknown class values \[7\]"),
     ("missing", "t.jpg: no mask t.png")],
)
def test_malformed_sagemaker_segmentation_names_the_file_and_the_problem(channel, words):
    with pytest.raises(vf.DataFormatError, match=words):
        vf.read_sagemaker_segmentation(FIXTURES / "sagemaker_segmentation", channel, num_classes=3)


def test_voc_segmentation_class_pngs_give_class_indices_with_void_border():
    records = vf.read_voc_segmentation(FIXTURES / "voc", split="train")
    assert len(records) == 2
    mask = records[0]["mask"]
    assert mask.shape == (16, 20) and int(mask[3, 5]) == vf.VOC_CLASSES.index("dog") + 1
    assert int(mask[8, 3]) == 255 and int(mask[12, 15]) == 0
    resized = vf.read_voc_segmentation(FIXTURES / "voc", split="train", image_size=8)
    assert resized[0]["image"].shape == (3, 8, 8) and resized[0]["mask"].shape == (8, 8)
    assert set(torch.unique(resized[0]["mask"]).tolist()) <= {0, 12, 255}  # nearest: no blended labels


@pytest.mark.parametrize("split, words", [("bad_size", "000003.png: mask is 10x10 but 000003.jpg is 20x16"),
                                          ("missing", "000004.png: mask missing")])
def test_malformed_voc_segmentation_names_the_file_and_the_problem(split, words):
    with pytest.raises(vf.DataFormatError, match=words):
        vf.read_voc_segmentation(FIXTURES / "voc", split=split)


def test_read_image_rejects_a_file_that_is_not_an_image(tmp_path):
    bad = tmp_path / "fake.jpg"
    bad.write_text("hello")
    with pytest.raises(vf.DataFormatError, match="fake.jpg: not a readable image"):
        vf.read_image(bad)
