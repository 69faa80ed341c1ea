"""Image classification benchmarks: our ResNet against torchvision's, and a GPU speed run.

1. Training throughput (images/s) of helpers.resnet's ResNet-18 and ResNet-50 against torchvision's
   `resnet18` / `resnet50` (weights=None) under identical settings: same random data, batch, input size,
   optimizer, device, precision and memory format; medians of repeated timing windows, the two models
   interleaved so that machine noise hits both alike. Target: ours / torchvision >= 0.95.
2. The speed run (CUDA only; `--speedrun`): the known fast CIFAR-10 recipe on a CIFAR-10-shaped set
   (50,000 training and 10,000 test images, 32x32): a residual network of the "ResNet-9" kind built from our
   BasicBlock, label smoothing 0.2, a one-cycle learning rate (linear up, linear down), Nesterov SGD,
   random flips and translations (pad 4, reflect) drawn per image on the GPU (helpers.resnet.augment),
   test-time flip averaging, channels_last and bf16 autocast, the data set resident on the GPU. It reports
   seconds per epoch and the time to reach `--target` test accuracy. The default data are our printed digits
   (offline); `--dataset cifar10 --data-dir DIR` runs the same recipe on the real CIFAR-10.
   `--smoke` runs a few hundred images through the same code on any device (a check that it runs, not a
   measurement).

Usage:
    .venv/bin/python benchmarks/image_classification.py                 # throughput, CPU (and GPU if present)
    .venv/bin/python benchmarks/image_classification.py --speedrun      # + the GPU speed run
    .venv/bin/python benchmarks/image_classification.py --speedrun --dataset cifar10 --data-dir data/
    .venv/bin/python benchmarks/image_classification.py --smoke         # the speed-run code path, tiny, any device

The last line of the output is the headline ratio (ours / torchvision, training images/s).
"""

from __future__ import annotations

import argparse
import math
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from helpers import resnet as R  # noqa: E402


def describe(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda})"
    return f"CPU: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# --- 1. throughput: ours vs torchvision -------------------------------------------------------------


def training_step_timer(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, device: torch.device, bf16: bool):
    """A function that runs `steps` training steps and returns images/s."""
    memory = torch.channels_last if device.type == "cuda" else torch.contiguous_format
    model = model.to(device, memory_format=memory).train()
    images = images.to(device).contiguous(memory_format=memory)
    labels = labels.to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)

    def run(steps: int) -> float:
        sync(device)
        start = time.perf_counter()
        for _ in range(steps):
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                loss = F.cross_entropy(model(images), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        sync(device)
        return steps * len(labels) / (time.perf_counter() - start)

    return run


def throughput(device: torch.device, depths: tuple[int, ...], batch: int, size: int, steps: int, repeats: int) -> list[tuple]:
    rows = []
    bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
    for depth in depths:
        torch.manual_seed(0)
        reference = getattr(torchvision.models, f"resnet{depth}")(weights=None)
        ours = R.resnet(depth)
        ours.load_state_dict(reference.state_dict())
        images = torch.rand(batch, 3, size, size)
        labels = torch.randint(0, 1000, (batch,))
        timers = {"ours": training_step_timer(ours, images, labels, device, bf16),
                  "torchvision": training_step_timer(reference, images, labels, device, bf16)}
        for run in timers.values():
            run(2)  # warm-up: kernel selection, allocator
        samples = {name: [] for name in timers}
        for _ in range(repeats):
            for name, run in timers.items():
                samples[name].append(run(steps))
        med = {name: statistics.median(values) for name, values in samples.items()}
        rows.append((f"ResNet-{depth}", device.type, f"{batch}x3x{size}x{size}", "bf16" if bf16 else "fp32", med["ours"], med["torchvision"], med["ours"] / med["torchvision"]))
        del ours, reference
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return rows


# --- 2. the speed run ---------------------------------------------------------------------------------


def conv_bn(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False), nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))


class ResNet9(nn.Module):
    """The fast-CIFAR residual network (Page, 2018): prep 64, [128 + residual], 256, [512 + residual],
    global max pool, a linear layer scaled by 1/8. Residuals are helpers.resnet.BasicBlock."""

    def __init__(self, num_classes: int = 10, scale: float = 0.125):
        super().__init__()
        self.body = nn.Sequential(
            conv_bn(3, 64),
            conv_bn(64, 128), nn.MaxPool2d(2), R.BasicBlock(128, 128),
            conv_bn(128, 256), nn.MaxPool2d(2),
            conv_bn(256, 512), nn.MaxPool2d(2), R.BasicBlock(512, 512),
            nn.AdaptiveMaxPool2d(1), nn.Flatten(),
        )
        self.fc = nn.Linear(512, num_classes, bias=False)
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.body(x)) * self.scale


def speedrun_data(dataset: str, data_dir: str, smoke: bool, seed: int):
    """uint8 (N, 3, 32, 32) train/test images and labels, CIFAR-10-shaped."""
    if dataset == "cifar10":
        from helpers.data.vision_formats import load_torchvision

        train_x, train_y, _ = load_torchvision("cifar10", data_dir, train=True)
        test_x, test_y, _ = load_torchvision("cifar10", data_dir, train=False)
    else:
        from helpers.data.images import printed_digits

        n_train, n_test = (512, 256) if smoke else (50_000, 10_000)
        x, y = printed_digits(n_train + n_test, 32, seed=seed, cache=not smoke)
        train_x, train_y, test_x, test_y = x[:n_train], y[:n_train], x[n_train:], y[n_train:]
    if smoke:
        train_x, train_y, test_x, test_y = train_x[:512], train_y[:512], test_x[:256], test_y[:256]
    return train_x, train_y, test_x, test_y


def speedrun(device: torch.device, dataset: str, data_dir: str, epochs: int, batch: int, target: float, smoke: bool, compile_model: bool, seed: int = 0) -> dict:
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    train_x, train_y, test_x, test_y = speedrun_data(dataset, data_dir, smoke, seed)
    # the whole data set lives on the device; standardise there
    train_x, train_y, test_x, test_y = (t.to(device) for t in (train_x, train_y, test_x, test_y))
    mean = (train_x.float() / 255).mean((0, 2, 3), keepdim=True)
    std = (train_x.float() / 255).std((0, 2, 3), keepdim=True)
    bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
    memory = torch.channels_last if device.type == "cuda" else torch.contiguous_format
    model = ResNet9().to(device, memory_format=memory)
    step_model = torch.compile(model) if compile_model else model

    steps_per_epoch = math.ceil(len(train_y) / batch)
    total = epochs * steps_per_epoch
    peak_lr, weight_decay = 0.4, 5e-4 * batch / 512
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim <= 1 else decay).append(p)
    optimizer = torch.optim.SGD([{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
                                lr=peak_lr, momentum=0.9, nesterov=True)
    warm = max(1, int(0.25 * total))
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min((s + 1) / warm, max(0.0, (total - s) / (total - warm))))

    def prepare(images: torch.Tensor) -> torch.Tensor:  # float in [0, 1] -> standardised
        return ((images - mean) / std).contiguous(memory_format=memory)

    flip = dataset == "cifar10"  # mirrored digits are not digits

    def evaluate() -> float:
        model.eval()
        correct = 0
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            for i in range(0, len(test_y), 1000):
                x = test_x[i : i + 1000].float() / 255
                logits = step_model(prepare(x))
                if flip:  # test-time flip: average the mirrored view (not for digits)
                    logits = logits + step_model(prepare(x.flip(-1)))
                correct += int((logits.argmax(1) == test_y[i : i + 1000]).sum())
        model.train()
        return correct / len(test_y)

    history = []
    train_seconds = 0.0
    reached = None
    for epoch in range(epochs):
        sync(device)
        start = time.perf_counter()
        order = torch.randperm(len(train_y), generator=generator).to(device)
        for i in range(0, len(train_y), batch):
            rows = order[i : i + batch]
            x = R.augment(train_x[rows].float() / 255, "crop", flip=flip, padding=4, padding_mode="reflect", generator=generator)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                loss = F.cross_entropy(step_model(prepare(x)), train_y[rows], label_smoothing=0.2)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
        sync(device)
        seconds = time.perf_counter() - start
        train_seconds += seconds
        accuracy = evaluate()  # not timed
        history.append((epoch + 1, seconds, accuracy))
        print(f"  epoch {epoch + 1:2d}: {seconds:6.2f} s, {len(train_y) / seconds:9.0f} images/s, test accuracy {accuracy:.4f}", flush=True)
        if reached is None and accuracy >= target:
            reached = (epoch + 1, train_seconds)
    return {"history": history, "reached": reached, "train_seconds": train_seconds, "images": len(train_y)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="timing windows per model (median reported)")
    parser.add_argument("--speedrun", action="store_true", help="run the CIFAR-10-shaped speed run (CUDA)")
    parser.add_argument("--smoke", action="store_true", help="the speed-run code path on a few hundred images, any device")
    parser.add_argument("--dataset", choices=("printed-digits", "cifar10"), default="printed-digits")
    parser.add_argument("--data-dir", default="data", help="folder with cifar-10-batches-py/ for --dataset cifar10")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--target", type=float, default=0.94, help="test accuracy the speed run times")
    parser.add_argument("--compile", action="store_true", help="torch.compile the speed-run network")
    args = parser.parse_args()

    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    print("Image classification benchmarks")
    for device in devices:
        print(f"  {device.type}: {describe(device)}")
    print(f"  torch {torch.__version__}, torchvision {torchvision.__version__}")

    if args.smoke or args.speedrun:
        device = devices[-1]
        if args.speedrun and device.type != "cuda":
            print("\nspeed run: skipped (no CUDA GPU here; GPU numbers were not measured)")
        else:
            epochs = 2 if args.smoke else args.epochs
            print(f"\nspeed run ({'smoke test, not a measurement' if args.smoke else 'measured'}): ResNet-9, {args.dataset}, {epochs} epochs, batch {args.batch}, {describe(device)}")
            result = speedrun(device, args.dataset, args.data_dir, epochs, min(args.batch, 128) if args.smoke else args.batch,
                              args.target, args.smoke, args.compile and device.type == "cuda")
            per_epoch = statistics.median(s for _, s, _ in result["history"][1:] or result["history"])
            print(f"  median seconds per epoch {per_epoch:.2f} ({result['images'] / per_epoch:.0f} images/s); total training {result['train_seconds']:.1f} s")
            if result["reached"]:
                print(f"  reached {args.target:.0%} test accuracy after {result['reached'][0]} epochs, {result['reached'][1]:.1f} s of training")
            else:
                print(f"  did not reach {args.target:.0%} test accuracy (best {max(a for _, _, a in result['history']):.4f})")

    rows = []
    for device in devices:
        if device.type == "cuda":
            rows += throughput(device, (18, 50), batch=128, size=224, steps=10, repeats=args.repeats)
        else:
            rows += throughput(device, (18, 50), batch=16, size=64, steps=3, repeats=args.repeats)
    print("\ntraining throughput, ours vs torchvision (same weights, data, batch, optimizer; median of "
          f"{args.repeats} windows)")
    header = f"{'model':10} {'device':6} {'batch':14} {'dtype':5} {'ours img/s':>11} {'torchvision':>12} {'ratio':>6}"
    print(header)
    print("-" * len(header))
    for name, dev, shape, dtype, ours, theirs, ratio in rows:
        print(f"{name:10} {dev:6} {shape:14} {dtype:5} {ours:11.1f} {theirs:12.1f} {ratio:6.3f}")
    if not torch.cuda.is_available():
        print("GPU: not measured (no CUDA device)")
    headline = statistics.median(r[-1] for r in rows)
    print(f"headline: ours / torchvision training images/s (median over models and devices) = {headline:.3f}")


if __name__ == "__main__":
    main()
