"""Object2Vec on rating prediction against the bias model and biased matrix factorisation, measured in
the same run on the same split and device; plus Object2Vec's training throughput (pairs/s).

    .venv/bin/python benchmarks/object2vec.py [--repeats 3] [--data-dir data/ml-100k] [--device auto]

Default data: helpers.data.pairs.make_ratings (MovieLens-like, known noise floor). When MovieLens-100k is
on disk (data/ml-100k or --data-dir), its ua.base/ua.test split is measured too, with validation for early
stopping carved out of ua.base only (the test split is never used for early stopping).
Prints medians over --repeats seeds; the last line is the headline ratio (Object2Vec RMSE / biased MF RMSE).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from helpers import object2vec as o2v
from helpers.data import pairs
from helpers.device import get_device, seed_everything

# The configuration of notebooks/03_object2vec.ipynb (its parameters cell).
MODEL = dict(enc0_network="pooled_embedding", enc0_token_embedding_dim=8, enc1_token_embedding_dim=8, enc_dim=8,
             mlp_layers=1, mlp_dim=64, mlp_activation="relu", dropout=0.2, output_layer="mean_squared_error")
TRAIN = dict(epochs=30, mini_batch_size=1024, learning_rate=0.005, weight_decay=0.001,
             early_stopping_patience=3, early_stopping_tolerance=0.0005)


def rmse(pred: np.ndarray, part: pairs.Ratings) -> float:
    return float(np.sqrt(np.mean((np.asarray(pred) - part.ratings) ** 2)))


def as_pairs(part: pairs.Ratings):
    return torch.from_numpy(part.users)[:, None], torch.from_numpy(part.items)[:, None], torch.from_numpy(part.ratings).float()


def splits(name: str, seed: int, data_dir: Path | None):
    if name == "synthetic":
        return pairs.split_ratings(pairs.make_ratings(seed=seed), (0.85, 0.05, 0.10), seed=seed)
    base, test = pairs.load_movielens_100k(data_dir)
    order = np.random.default_rng(seed).permutation(len(base))
    return base.subset(order[len(base) // 20 :]), base.subset(order[: len(base) // 20]), test


def run_once(name: str, seed: int, data_dir: Path | None, device: torch.device) -> dict[str, tuple[float, float]]:
    train, valid, test = splits(name, seed, data_dir)
    args = (train.users, train.items, train.ratings, train.n_users, train.n_items)
    out: dict[str, tuple[float, float]] = {}

    start = time.perf_counter()
    bias = min((o2v.fit_bias_model(*args, reg=reg) for reg in (2.0, 5.0, 10.0, 25.0)),
               key=lambda m: rmse(o2v.predict_ratings(m, valid.users, valid.items), valid))
    out["bias model"] = (rmse(o2v.predict_ratings(bias, test.users, test.items), test), time.perf_counter() - start)

    start = time.perf_counter()
    grid = [o2v.fit_biased_mf(*args, rank=rank, reg=reg, seed=seed) for rank in (1, 2, 4) for reg in (5.0, 15.0)]
    mf = min(grid, key=lambda m: rmse(o2v.predict_ratings(m, valid.users, valid.items), valid))
    out["biased MF (ALS)"] = (rmse(o2v.predict_ratings(mf, test.users, test.items), test), time.perf_counter() - start)

    seed_everything(seed)
    model = o2v.Object2Vec(enc0_vocab_size=train.n_users + 1, enc1_vocab_size=train.n_items + 1, enc0_max_seq_len=1, **MODEL)
    start = time.perf_counter()
    o2v.fit_object2vec(model, as_pairs(train), as_pairs(valid), seed=seed, device=device, progress=False, **TRAIN)
    if device.type == "cuda":
        torch.cuda.synchronize()
    out["Object2Vec"] = (o2v.evaluate_pairs(model, *as_pairs(test), prefix="test")["test:rmse"], time.perf_counter() - start)
    if test.expected is not None:
        out["noise floor"] = (rmse(test.expected, test), 0.0)
    return out


def throughput(device: torch.device, repeats: int) -> float:
    """Training pairs per second of the notebook's rating model (median over repeats of 2 epochs)."""
    train, valid, _ = splits("synthetic", 0, None)
    rates = []
    for seed in range(repeats):
        seed_everything(seed)
        model = o2v.Object2Vec(enc0_vocab_size=train.n_users + 1, enc1_vocab_size=train.n_items + 1, enc0_max_seq_len=1, **MODEL)
        history = o2v.fit_object2vec(model, as_pairs(train), as_pairs(valid), seed=seed, device=device, progress=False,
                                     **{**TRAIN, "epochs": 2, "early_stopping_patience": 5})
        rates.append(2 * len(train) / sum(history.epoch_seconds))
    return statistics.median(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data-dir", type=Path, default=None, help="MovieLens-100k folder (default data/ml-100k)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (these models are small)")
    args = parser.parse_args()
    device = get_device(args.device)
    torch.set_num_threads(args.threads)
    print(f"device: {device}" + (f" ({torch.cuda.get_device_name(0)})" if device.type == "cuda" else f", {args.threads} CPU thread(s)"))

    datasets = ["synthetic"]
    try:
        pairs.load_movielens_100k(args.data_dir)
        datasets.append("movielens-100k")
    except FileNotFoundError as err:
        print(f"movielens-100k skipped: {str(err).splitlines()[0][:160]}")

    headline = None
    print(f"\n{'data':15s} {'model':18s} {'test RMSE':>10s} {'fit s':>8s}   (medians of {args.repeats} seeds)")
    for name in datasets:
        runs = [run_once(name, seed, args.data_dir, device) for seed in range(args.repeats)]
        medians = {k: (statistics.median(r[k][0] for r in runs), statistics.median(r[k][1] for r in runs)) for k in runs[0]}
        for model_name, (value, seconds) in medians.items():
            print(f"{name:15s} {model_name:18s} {value:10.4f} {seconds:8.1f}")
        ratio = medians["Object2Vec"][0] / medians["biased MF (ALS)"][0]
        print(f"{name:15s} {'O2V / bias model':18s} {medians['Object2Vec'][0] / medians['bias model'][0]:10.3f}")
        if "noise floor" in medians:
            print(f"{name:15s} {'O2V / noise floor':18s} {medians['Object2Vec'][0] / medians['noise floor'][0]:10.3f}")
        if name == "synthetic":
            headline = ratio

    print(f"\nthroughput {device.type}: {throughput(device, args.repeats):,.0f} training pairs/s (Object2Vec, mini_batch_size={TRAIN['mini_batch_size']})")
    if device.type == "cpu" and torch.cuda.is_available():
        print(f"throughput cuda: {throughput(torch.device('cuda'), args.repeats):,.0f} training pairs/s")
    print(f"headline: Object2Vec RMSE / biased MF RMSE on the default data = {headline:.3f}")


if __name__ == "__main__":
    main()
