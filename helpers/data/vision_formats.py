"""Readers for real image data in the formats SageMaker's vision algorithms and the classic data sets use.

- classification: torchvision's CIFAR-10 / MNIST / Fashion-MNIST (`load_torchvision`), image
  folders listed by a SageMaker `.lst` file (`read_lst`) and class-per-folder trees
  (`read_image_folder`);
- detection: Pascal VOC (`read_voc_detection`) and SageMaker's JSON annotations
  (`read_sagemaker_detection`);
- segmentation: SageMaker's layout with PNG masks and an optional label map
  (`read_sagemaker_segmentation`) and VOC's SegmentationClass (`read_voc_segmentation`).

Boxes come back as float32 (k, 4) xyxy in pixel-edge coordinates, like helpers.data.scenes: a box
covering pixel columns 0..9 is x1 = 0, x2 = 10. Malformed input raises `DataFormatError` naming the
file and the problem; nothing is silently dropped. Every reader is tested on small files in
data/fixtures/vision/.

Used by the image classification, object detection and semantic segmentation notebooks when
`dataset` names a real data set or `data_dir` points at the user's files.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")
IGNORE_INDEX = 255

VOC_CLASSES = [
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
    "tvmonitor",
]
"""The 20 Pascal VOC object classes, in VOC's order (detection class ids 0..19, segmentation 1..20)."""


class DataFormatError(ValueError):
    """A data file is missing or malformed; the message names the file and the problem."""

    def __init__(self, path: str | Path, problem: str):
        self.path, self.problem = Path(path), problem
        super().__init__(f"{path}: {problem}")


# ----------------------------------------------------------------------------- images and masks

def read_image(path: str | Path) -> torch.Tensor:
    """An image file as uint8 (3, H, W) RGB (grey and palette images are converted)."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise DataFormatError(path, "image file not found")
    try:
        with Image.open(path) as img:
            rgb = np.asarray(img.convert("RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError) as err:
        raise DataFormatError(path, f"not a readable image ({err})") from err
    return torch.from_numpy(rgb.copy()).permute(2, 0, 1).contiguous()


def read_mask(path: str | Path) -> torch.Tensor:
    """A single-channel PNG mask (mode P or L) as uint8 (H, W) of class indices.

    Palette (P) images give their palette indices, not colours: that is how VOC and SageMaker
    store class ids. RGB masks are rejected rather than guessed.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise DataFormatError(path, "mask file not found")
    try:
        with Image.open(path) as img:
            if img.mode not in ("P", "L"):
                raise DataFormatError(path, f"expected a single-channel PNG mask (mode P or L), got mode {img.mode}")
            values = np.asarray(img, dtype=np.uint8)
    except (UnidentifiedImageError, OSError) as err:
        raise DataFormatError(path, f"not a readable mask image ({err})") from err
    return torch.from_numpy(values.copy())


def _resize_image(image: torch.Tensor, size: int) -> torch.Tensor:
    from torchvision.transforms.v2 import functional as TF

    return TF.resize(image, [size, size], antialias=True)


def _resize_mask(mask: torch.Tensor, size: int) -> torch.Tensor:
    from torchvision.transforms.v2 import InterpolationMode
    from torchvision.transforms.v2 import functional as TF

    return TF.resize(mask[None], [size, size], interpolation=InterpolationMode.NEAREST)[0]


def _scale_boxes(boxes: torch.Tensor, height: int, width: int, size: int) -> torch.Tensor:
    return boxes * torch.tensor([size / width, size / height, size / width, size / height])


def _check_size(image_size: int | None) -> int | None:
    if image_size is None:
        return None
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
        raise ValueError(f"image_size: expected None or a positive integer, got {image_size!r}")
    return image_size


def _stack_or_list(images: list[torch.Tensor], image_size: int | None):
    if image_size is None:
        return images
    return torch.stack([_resize_image(img, image_size) for img in images]) if images else torch.zeros(0, 3, image_size, image_size, dtype=torch.uint8)


def _folder(path: str | Path, what: str) -> Path:
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{what}: folder {path} does not exist")
    return path


# ----------------------------------------------------------------------------- torchvision data sets

TORCHVISION_SETS = {
    "cifar10": dict(
        cls="CIFAR10", folder="cifar-10-batches-py", channels=3,
        url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        layout="cifar-10-batches-py/ with data_batch_1 ... data_batch_5, test_batch, batches.meta",
    ),
    "mnist": dict(
        cls="MNIST", folder="MNIST/raw", channels=1,
        url="https://ossci-datasets.s3.amazonaws.com/mnist/ (train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
            "t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz)",
        layout="MNIST/raw/ with train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, "
               "t10k-labels-idx1-ubyte (gunzipped)",
    ),
    "fashion-mnist": dict(
        cls="FashionMNIST", folder="FashionMNIST/raw", channels=1,
        url="http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/ (the same four idx files as MNIST)",
        layout="FashionMNIST/raw/ with train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, "
               "t10k-labels-idx1-ubyte (gunzipped)",
    ),
}


def load_torchvision(
    name: str,
    data_dir: str | Path,
    train: bool = True,
    download: bool = True,
    check_integrity: bool = True,
) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """CIFAR-10, MNIST or Fashion-MNIST through torchvision, from `data_dir`.

    Files already under data_dir are used as they are; when missing and `download` is true,
    torchvision downloads them there. Offline without the files, a FileNotFoundError says what to
    download and where to put it. `check_integrity=False` skips CIFAR's checksum test (for
    hand-made files in the real format, such as our fixtures).
    Returns images uint8 (N, C, H, W) (C = 3 for CIFAR-10, 1 for the MNISTs), labels int64 (N,)
    and the class names.
    """
    import torchvision.datasets as tvd

    if name not in TORCHVISION_SETS:
        raise ValueError(f"name: expected one of {sorted(TORCHVISION_SETS)}, got {name!r}")
    spec = TORCHVISION_SETS[name]
    root = Path(data_dir)
    cls = getattr(tvd, spec["cls"])
    if not check_integrity and name == "cifar10":
        # md5 None: torchvision then only checks that the files exist
        cls = type("UncheckedCIFAR10", (cls,), {"_check_integrity": lambda self: True,
                                                "meta": {**cls.meta, "md5": None}})

    def missing(reason: str) -> FileNotFoundError:
        return FileNotFoundError(
            f"{name}: {reason}. Download {spec['url']} and unpack it into {root.resolve()} so that it holds "
            f"{spec['layout']}; or run once with internet access and download=True."
        )

    try:
        data = cls(str(root), train=train, download=False)
    except RuntimeError as err:
        if not download:
            raise missing(f"no usable files under {root} ({err})") from err
        try:
            data = cls(str(root), train=train, download=True)
        except (OSError, RuntimeError) as err2:  # URLError is an OSError
            raise missing(f"the files are not under {root} and downloading failed ({err2})") from err2
    images = torch.as_tensor(np.asarray(data.data))
    images = images.permute(0, 3, 1, 2) if images.ndim == 4 else images[:, None]
    labels = torch.as_tensor(np.asarray(data.targets), dtype=torch.int64)
    return images.contiguous().to(torch.uint8), labels, list(data.classes)


# ----------------------------------------------------------------------------- classification folders

def read_lst(
    lst_path: str | Path,
    image_root: str | Path | None = None,
    image_size: int | None = None,
) -> tuple[list[torch.Tensor] | torch.Tensor, torch.Tensor, list[str]]:
    """Images listed in a SageMaker `.lst` file: `index<TAB>label<TAB>relative/path.jpg` per line.

    Several label columns (`index<TAB>l1<TAB>l2 ...<TAB>path`) make a multi-label file. Paths are
    relative to `image_root` (default: the .lst file's folder).
    Returns images (a list of uint8 (3, H, W), or uint8 (N, 3, S, S) resized when image_size is
    given), labels (int64 (N,) for one label column, float32 (N, L) for several) and the paths.
    """
    lst_path = Path(lst_path)
    image_size = _check_size(image_size)
    if not lst_path.is_file():
        raise FileNotFoundError(f"lst_path: {lst_path} does not exist")
    root = Path(image_root) if image_root is not None else lst_path.parent
    rows: list[tuple[list[float], str]] = []
    width = None
    seen: dict[str, int] = {}
    for number, line in enumerate(lst_path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.rstrip("\n").split("\t")
        where = f"{lst_path}, line {number}"
        if len(fields) < 3:
            raise DataFormatError(where, f"expected index<TAB>label<TAB>path (tab-separated), got {line!r}")
        index, *label_fields, rel = fields
        if index.strip() in seen:
            raise DataFormatError(where, f"index {index.strip()} repeats line {seen[index.strip()]}")
        seen[index.strip()] = number
        try:
            values = [float(v) for v in label_fields]
        except ValueError as err:
            raise DataFormatError(where, f"labels must be numbers, got {label_fields!r}") from err
        if width is None:
            width = len(values)
        elif len(values) != width:
            raise DataFormatError(where, f"expected {width} label column(s) like the first line, got {len(values)}")
        if width == 1 and (values[0] != int(values[0]) or values[0] < 0):
            raise DataFormatError(where, f"a class label must be a whole number >= 0, got {label_fields[0]!r}")
        rows.append((values, rel.strip()))
    if not rows:
        raise DataFormatError(lst_path, "no entries")
    images = [read_image(root / rel) for _, rel in rows]
    if width == 1:
        labels = torch.tensor([int(v[0]) for v, _ in rows], dtype=torch.int64)
    else:
        labels = torch.tensor([v for v, _ in rows], dtype=torch.float32)
    return _stack_or_list(images, image_size), labels, [rel for _, rel in rows]


def read_image_folder(
    root: str | Path,
    image_size: int | None = None,
) -> tuple[list[torch.Tensor] | torch.Tensor, torch.Tensor, list[str]]:
    """A class-per-folder tree (root/<class>/<image>), as torchvision's ImageFolder reads it.

    Classes are the sorted sub-folder names; class id = position. Files that are not images
    (by suffix) raise rather than being skipped.
    Returns images (list of uint8 (3, H, W), or uint8 (N, 3, S, S) with image_size), labels int64 (N,)
    and the class names.
    """
    from torchvision.datasets.folder import find_classes

    root = _folder(root, "root")
    image_size = _check_size(image_size)
    try:
        classes, class_to_idx = find_classes(str(root))
    except FileNotFoundError as err:
        raise DataFormatError(root, "expected one sub-folder per class, found none") from err
    images, labels = [], []
    for name in classes:
        files = sorted(p for p in (root / name).rglob("*") if p.is_file() and not p.name.startswith("."))
        if not files:
            raise DataFormatError(root / name, "class folder holds no images")
        for path in files:
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                raise DataFormatError(path, f"not an image file (expected one of {', '.join(IMAGE_SUFFIXES)})")
            images.append(read_image(path))
            labels.append(class_to_idx[name])
    return _stack_or_list(images, image_size), torch.tensor(labels, dtype=torch.int64), classes


# ----------------------------------------------------------------------------- detection

def _detection_record(image, boxes, labels, difficult, file, image_size):
    h, w = image.shape[-2:]
    record = {
        "image": image,
        "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        "labels": torch.tensor(labels, dtype=torch.int64),
        "difficult": torch.tensor(difficult, dtype=torch.bool),
        "file": str(file),
    }
    if image_size is not None:
        record["image"] = _resize_image(image, image_size)
        record["boxes"] = _scale_boxes(record["boxes"], h, w, image_size)
    return record


def _find_image(folder: Path, stem: str) -> Path | None:
    for suffix in IMAGE_SUFFIXES:
        for candidate in (folder / f"{stem}{suffix}", folder / f"{stem}{suffix.upper()}"):
            if candidate.is_file():
                return candidate
    return None


def _split_ids(path: Path) -> list[str]:
    if not path.is_file():
        raise FileNotFoundError(f"split: {path} does not exist")
    return [line.split()[0] for line in path.read_text().splitlines() if line.strip()]


def read_voc_detection(
    root: str | Path,
    split: str | None = "trainval",
    class_names: Sequence[str] | None = None,
    image_size: int | None = None,
    keep_difficult: bool = True,
) -> tuple[list[dict[str, Any]], list[str]]:
    """Pascal VOC detection: root/JPEGImages/<id>.jpg with root/Annotations/<id>.xml.

    `split` names root/ImageSets/Main/<split>.txt (None: every annotation file). `class_names`
    defaults to VOC_CLASSES; an object of another class is an error. VOC's 1-based inclusive
    pixel boxes become pixel-edge xyxy: (xmin - 1, ymin - 1, xmax, ymax).
    Returns one record per image, {"image": uint8 (3, H, W), "boxes": float32 (k, 4), "labels":
    int64 (k,), "difficult": bool (k,), "file": str}, and the class names. `keep_difficult=False`
    removes difficult objects (VOC's evaluation ignores them); `image_size` resizes to a square and
    scales the boxes.
    """
    root = _folder(root, "root")
    image_size = _check_size(image_size)
    names = list(class_names) if class_names is not None else list(VOC_CLASSES)
    index = {name: i for i, name in enumerate(names)}
    ann_dir, img_dir = root / "Annotations", root / "JPEGImages"
    if split is None:
        ids = sorted(p.stem for p in ann_dir.glob("*.xml"))
    else:
        ids = _split_ids(root / "ImageSets" / "Main" / f"{split}.txt")
    records = []
    for image_id in ids:
        xml_path = ann_dir / f"{image_id}.xml"
        if not xml_path.is_file():
            raise DataFormatError(xml_path, f"annotation missing for image {image_id}")
        try:
            tree = ET.parse(xml_path).getroot()
        except ET.ParseError as err:
            raise DataFormatError(xml_path, f"not valid XML ({err})") from err
        file_name = tree.findtext("filename") or f"{image_id}.jpg"
        image_path = img_dir / file_name.strip()
        if not image_path.is_file():
            found = _find_image(img_dir, image_id)
            if found is None:
                raise DataFormatError(xml_path, f"image {image_path.name} not found in {img_dir}")
            image_path = found
        image = read_image(image_path)
        h, w = image.shape[-2:]
        size = tree.find("size")
        if size is not None and size.findtext("width") and size.findtext("height"):
            declared = (int(float(size.findtext("height"))), int(float(size.findtext("width"))))
            if declared != (h, w):
                raise DataFormatError(xml_path, f"<size> says {declared[1]}x{declared[0]} but {image_path.name} is {w}x{h}")
        boxes, labels, difficult = [], [], []
        for number, obj in enumerate(tree.findall("object"), start=1):
            name = (obj.findtext("name") or "").strip()
            if name not in index:
                raise DataFormatError(xml_path, f"object {number}: unknown class {name!r} (expected one of {names})")
            box = obj.find("bndbox")
            try:
                xmin, ymin, xmax, ymax = (float(box.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax"))
            except (AttributeError, TypeError, ValueError) as err:
                raise DataFormatError(xml_path, f"object {number} ({name}): <bndbox> needs numeric xmin, ymin, xmax, ymax") from err
            if not (1 <= xmin <= xmax <= w and 1 <= ymin <= ymax <= h):
                raise DataFormatError(
                    xml_path, f"object {number} ({name}): box ({xmin:g}, {ymin:g}, {xmax:g}, {ymax:g}) is outside the "
                              f"{w}x{h} image or inverted (VOC boxes are 1-based and inclusive)")
            hard = (obj.findtext("difficult") or "0").strip() == "1"
            if hard and not keep_difficult:
                continue
            boxes.append([xmin - 1, ymin - 1, xmax, ymax])
            labels.append(index[name])
            difficult.append(hard)
        records.append(_detection_record(image, boxes, labels, difficult, image_path, image_size))
    return records, names


def read_sagemaker_detection(
    image_dir: str | Path,
    annotation_dir: str | Path | None = None,
    num_classes: int | None = None,
    image_size: int | None = None,
) -> tuple[list[dict[str, Any]], list[str]]:
    """SageMaker object detection's JSON format: one <name>.json per image in annotation_dir.

    Each JSON holds "file", "image_size" [{"width", "height", "depth"}], "annotations" [{"class_id",
    "left", "top", "width", "height"}] (absolute pixels, class ids from 0) and optional
    "categories" [{"class_id", "name"}]. annotation_dir defaults to `<image_dir>_annotation`
    (SageMaker's train/ and train_annotation/ channels). Every image needs an annotation and every
    annotation an image. Boxes become xyxy = (left, top, left + width, top + height).
    Returns records like read_voc_detection (difficult all False) and the class names (from
    "categories", else "class_<id>").
    """
    image_dir = _folder(image_dir, "image_dir")
    ann_dir = _folder(annotation_dir if annotation_dir is not None else image_dir.with_name(image_dir.name + "_annotation"),
                      "annotation_dir")
    image_size = _check_size(image_size)
    if num_classes is not None and (isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1):
        raise ValueError(f"num_classes: expected None or a positive integer, got {num_classes!r}")
    images = {p.stem: p for p in sorted(image_dir.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}
    annotations = {p.stem: p for p in sorted(ann_dir.glob("*.json"))}
    for stem, path in images.items():
        if stem not in annotations:
            raise DataFormatError(path, f"no annotation {stem}.json in {ann_dir}")
    for stem, path in annotations.items():
        if stem not in images:
            raise DataFormatError(path, f"no image named {stem}.* in {image_dir}")
    categories: dict[int, str] = {}
    records = []
    for stem, json_path in annotations.items():
        try:
            doc = json.loads(json_path.read_text())
        except json.JSONDecodeError as err:
            raise DataFormatError(json_path, f"not valid JSON ({err})") from err
        if not isinstance(doc, dict) or not isinstance(doc.get("annotations"), list):
            raise DataFormatError(json_path, 'expected an object with an "annotations" list')
        image = read_image(images[stem])
        h, w = image.shape[-2:]
        declared = doc.get("image_size")
        if declared:
            try:
                dw, dh = int(declared[0]["width"]), int(declared[0]["height"])
            except (KeyError, IndexError, TypeError, ValueError) as err:
                raise DataFormatError(json_path, '"image_size" must be [{"width": W, "height": H, "depth": D}]') from err
            if (dw, dh) != (w, h):
                raise DataFormatError(json_path, f'"image_size" says {dw}x{dh} but {images[stem].name} is {w}x{h}')
        for cat in doc.get("categories", []) or []:
            try:
                categories.setdefault(int(cat["class_id"]), str(cat["name"]))
            except (KeyError, TypeError, ValueError) as err:
                raise DataFormatError(json_path, 'each "categories" entry needs "class_id" and "name"') from err
        boxes, labels = [], []
        for number, ann in enumerate(doc["annotations"], start=1):
            try:
                cid = ann["class_id"]
                left, top, bw, bh = (float(ann[k]) for k in ("left", "top", "width", "height"))
            except (KeyError, TypeError, ValueError) as err:
                raise DataFormatError(json_path, f'annotation {number}: needs numeric "class_id", "left", "top", "width", "height"') from err
            if isinstance(cid, bool) or not isinstance(cid, (int, float)) or cid != int(cid) or cid < 0:
                raise DataFormatError(json_path, f"annotation {number}: class_id must be a whole number >= 0, got {cid!r}")
            cid = int(cid)
            if num_classes is not None and cid >= num_classes:
                raise DataFormatError(json_path, f"annotation {number}: unknown class_id {cid} (num_classes = {num_classes})")
            if bw <= 0 or bh <= 0 or left < 0 or top < 0 or left + bw > w or top + bh > h:
                raise DataFormatError(json_path, f"annotation {number}: box left={left:g} top={top:g} width={bw:g} "
                                                 f"height={bh:g} is empty or outside the {w}x{h} image")
            boxes.append([left, top, left + bw, top + bh])
            labels.append(cid)
        records.append(_detection_record(image, boxes, labels, [False] * len(labels), images[stem], image_size))
    count = num_classes if num_classes is not None else (max([*categories, *(int(lab) for r in records for lab in r["labels"])], default=-1) + 1)
    names = [categories.get(i, f"class_{i}") for i in range(count)]
    return records, names


# ----------------------------------------------------------------------------- segmentation

def _apply_label_map(mask: torch.Tensor, label_map: dict[str, Any] | None, path: Path) -> torch.Tensor:
    if not label_map:
        return mask
    ignore = mask == IGNORE_INDEX
    if "map" in label_map:
        lut = torch.full((256,), -1, dtype=torch.int64)
        for source, target in label_map["map"].items():
            lut[int(source)] = int(target)
        lut[IGNORE_INDEX] = IGNORE_INDEX if lut[IGNORE_INDEX] < 0 else lut[IGNORE_INDEX]
        mapped = lut[mask.long()]
        if bool((mapped < 0).any()):
            bad = sorted(set(mask[mapped < 0].tolist()))
            raise DataFormatError(path, f"mask values {bad} are not in the label map's \"map\"")
        mask = mapped.to(torch.uint8)
    if "scale" in label_map:
        scale = int(float(label_map["scale"]))
        if scale < 1:
            raise DataFormatError(path, f"label map \"scale\" must be >= 1, got {label_map['scale']!r}")
        mask = torch.where(ignore, IGNORE_INDEX, mask // scale).to(torch.uint8)
    return mask


def _segmentation_records(pairs, num_classes, label_map, image_size):
    records = []
    for image_path, mask_path in pairs:
        image = read_image(image_path)
        mask = _apply_label_map(read_mask(mask_path), label_map, mask_path)
        if tuple(mask.shape) != tuple(image.shape[-2:]):
            raise DataFormatError(mask_path, f"mask is {mask.shape[1]}x{mask.shape[0]} but {image_path.name} is "
                                             f"{image.shape[2]}x{image.shape[1]}")
        if num_classes is not None:
            bad = sorted(set(mask[(mask >= num_classes) & (mask != IGNORE_INDEX)].tolist()))
            if bad:
                raise DataFormatError(mask_path, f"unknown class values {bad} (num_classes = {num_classes}; "
                                                 f"{IGNORE_INDEX} = ignore)")
        if image_size is not None:
            image, mask = _resize_image(image, image_size), _resize_mask(mask, image_size)
        records.append({"image": image, "mask": mask, "file": str(image_path)})
    return records


def read_sagemaker_segmentation(
    root: str | Path,
    channel: str = "train",
    num_classes: int | None = None,
    image_size: int | None = None,
) -> list[dict[str, Any]]:
    """SageMaker semantic segmentation's layout: root/<channel>/ images, root/<channel>_annotation/
    single-channel PNG masks with the same base names, optional root/label_map/<channel>_label_map.json.

    The label map is {"scale": s} (mask values are divided by s) or {"map": {"value": class}}
    (every mask value must be listed); 255 stays "ignore". Masks must be mode P or L and the same
    size as their image; with num_classes, values other than 0..num_classes-1 and 255 are errors.
    Returns records {"image": uint8 (3, H, W), "mask": uint8 (H, W), "file": str}.
    """
    root = _folder(root, "root")
    image_dir = _folder(root / channel, "channel")
    mask_dir = _folder(root / f"{channel}_annotation", "annotation folder")
    image_size = _check_size(image_size)
    label_map = None
    map_path = root / "label_map" / f"{channel}_label_map.json"
    if map_path.is_file():
        try:
            label_map = json.loads(map_path.read_text())
        except json.JSONDecodeError as err:
            raise DataFormatError(map_path, f"not valid JSON ({err})") from err
        if not isinstance(label_map, dict) or not ({"scale", "map"} & set(label_map)):
            raise DataFormatError(map_path, 'expected an object with "scale" or "map"')
    images = {p.stem: p for p in sorted(image_dir.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}
    masks = {p.stem: p for p in sorted(mask_dir.glob("*.png"))}
    for stem, path in images.items():
        if stem not in masks:
            raise DataFormatError(path, f"no mask {stem}.png in {mask_dir}")
    for stem, path in masks.items():
        if stem not in images:
            raise DataFormatError(path, f"no image named {stem}.* in {image_dir}")
    return _segmentation_records([(images[s], masks[s]) for s in images], num_classes, label_map, image_size)


def read_voc_segmentation(
    root: str | Path,
    split: str | None = "train",
    num_classes: int | None = 21,
    image_size: int | None = None,
) -> list[dict[str, Any]]:
    """Pascal VOC segmentation: root/JPEGImages/<id>.jpg with root/SegmentationClass/<id>.png.

    `split` names root/ImageSets/Segmentation/<split>.txt (None: every mask). Masks are palette
    PNGs: 0 background, 1..20 the VOC_CLASSES, 255 the "void" border.
    Returns records {"image": uint8 (3, H, W), "mask": uint8 (H, W), "file": str}.
    """
    root = _folder(root, "root")
    image_size = _check_size(image_size)
    mask_dir, img_dir = root / "SegmentationClass", root / "JPEGImages"
    if split is None:
        ids = sorted(p.stem for p in mask_dir.glob("*.png"))
    else:
        ids = _split_ids(root / "ImageSets" / "Segmentation" / f"{split}.txt")
    pairs = []
    for image_id in ids:
        mask_path = mask_dir / f"{image_id}.png"
        if not mask_path.is_file():
            raise DataFormatError(mask_path, f"mask missing for image {image_id}")
        image_path = _find_image(img_dir, image_id)
        if image_path is None:
            raise DataFormatError(mask_path, f"image {image_id}.jpg not found in {img_dir}")
        pairs.append((image_path, mask_path))
    return _segmentation_records(pairs, num_classes, None, image_size)
