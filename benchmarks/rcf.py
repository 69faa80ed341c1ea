"""Benchmark: our random cut forest (helpers.rcf) against rrcf, krcf and scikit-learn's IsolationForest.

Everything runs in one process on the same records: the default taxi-like stream (seed 0), standardised and
shingled by 48 (10,000 records of 48 values), with the same num_trees (100) and num_samples_per_tree (256).

- ours, batch: `RandomCutForest.fit` + `score` (numba on the CPU); on a GPU also the torch scorer on
  1,000,000 records, beside the CPU kernel on the same records.
- ours, streaming: `update` (score, then insert/delete), record by record.
- rrcf (pure Python, the paper's reference implementation): batch (trees on samples, every record scored by
  insert + codisp + forget) and streaming (forget, insert, codisp), timed on a subset and reported as a rate.
- krcf (Python bindings over AWS's open-source Rust RCF): streaming score + update on every record.
- IsolationForest: fit + score_samples, single-threaded and with all cores.

Wall times are medians over `--repeats` runs (`--slow-repeats` for rrcf and krcf) after a warm-up (numba compiles once; the cache makes later runs
fast). CPU seconds (this process, all threads) are shown too: on a shared machine they say more about the work.
ROC-AUC is against the labelled windows (a shingle holding an anomalous point is anomalous); streaming AUCs
skip the first week, when every detector is still filling its trees.

Run: .venv/bin/python benchmarks/rcf.py            (about 4 minutes on a busy 2-core machine)
     .venv/bin/python benchmarks/rcf.py --quick    (fewer repeats and records for the slow references)
Needs the bench extra: .venv/bin/pip install -e '.[bench]'  (rrcf needs setuptools<81).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
import warnings

import numpy as np
from sklearn.ensemble import IsolationForest
from sklearn.metrics import roc_auc_score

from helpers import rcf
from helpers.data import streams

SHINGLE = 48


def timed(fn, repeats):
    """(median wall seconds, median CPU seconds, last result) of fn() over `repeats` runs."""
    walls, cpus, out = [], [], None
    for _ in range(repeats):
        w, c = time.perf_counter(), time.process_time()
        out = fn()
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
    return statistics.median(walls), statistics.median(cpus), out


def shingled_stream(num_records: int, seed: int = 0):
    """(records (N, 48), labels (N,)) from the default stream, standardised and shingled."""
    weeks = max(3, int(np.ceil((num_records + SHINGLE - 1) / (7 * 48))))
    series = streams.taxi_stream(num_weeks=weeks, seed=seed)
    z = (series.values - series.values.mean()) / series.values.std()
    X = rcf.shingle(z, SHINGLE)
    labels = streams.labels_from_windows(len(X), streams.shingle_windows(series.windows, SHINGLE, len(z)))
    return np.ascontiguousarray(X[:num_records]), labels[:num_records]


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--trees", type=int, default=100)
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--rrcf-records", type=int, default=40, help="records rrcf scores against every tree (it is slow); reported as a rate")
    parser.add_argument("--slow-repeats", type=int, default=2, help="repeats for rrcf and krcf")
    parser.add_argument("--gpu-records", type=int, default=1_000_000)
    parser.add_argument("--torch-device", default="cuda", help="where the torch scorer runs ('cpu' exercises that path without a GPU)")
    parser.add_argument("--quick", action="store_true", help="one repeat for the slow references, fewer rrcf records")
    args = parser.parse_args()
    slow_repeats = 1 if args.quick else args.slow_repeats
    if args.quick:
        args.rrcf_records = min(args.rrcf_records, 10)
    T, m = args.trees, args.samples

    import numba
    import torch

    print(f"device: {cpu_name()}, {os.cpu_count()} CPUs, numba threads {numba.get_num_threads()}, "
          f"load average {os.getloadavg()[0]:.1f} at start; CUDA {'available: ' + torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'not available'}")
    X, y = shingled_stream(args.records)
    warm = 7 * 48  # the first week: trees still filling
    print(f"data: {len(X)} shingles of {X.shape[1]} values, {y.mean():.1%} labelled anomalous; {T} trees x {m} samples\n")
    rows = []  # (implementation, mode, records timed, wall s, cpu s, records/s, roc_auc, note)

    # ours: compile (or load from cache) outside the timings
    w = time.perf_counter()
    rcf.RandomCutForest(4, 32).fit(X[:200]).score(X[:10])
    rcf.RandomCutForest(4, 32).update(X[:50])
    print(f"ours: first calls (numba compile or cache load) {time.perf_counter() - w:.1f} s")

    def ours_batch():
        forest = rcf.RandomCutForest(T, m, seed=0).fit(X)
        return forest.score(X)

    wall, cpu, s = timed(ours_batch, args.repeats)
    rows.append(("ours (numba)", "batch fit+score", len(X), wall, cpu, len(X) / wall, roc_auc_score(y, s), ""))
    ours_batch_wall = wall

    def ours_stream():
        return rcf.RandomCutForest(T, m, seed=0).update(X)

    wall, cpu, s = timed(ours_stream, args.repeats)
    rows.append(("ours (numba)", "streaming", len(X), wall, cpu, len(X) / wall, roc_auc_score(y[warm:], s[warm:]), ""))
    ours_stream_rate = len(X) / wall

    # IsolationForest
    for jobs in (None, -1):
        def iforest():
            model = IsolationForest(n_estimators=T, max_samples=m, random_state=0, n_jobs=jobs).fit(X)
            return -model.score_samples(X)

        wall, cpu, s = timed(iforest, args.repeats)
        rows.append((f"IsolationForest (n_jobs={jobs})", "batch fit+score", len(X), wall, cpu, len(X) / wall, roc_auc_score(y, s), ""))
    iforest_best_wall = min(r[3] for r in rows if r[0].startswith("IsolationForest"))

    # krcf: AWS's Rust core; each shingle is one 48-dimensional point (shingle_size=1), uniform sampling
    krcf_rate = None
    try:
        import krcf

        def krcf_stream():
            forest = krcf.RandomCutForest({"dimensions": X.shape[1], "shingle_size": 1, "num_trees": T, "sample_size": m,
                                           "random_seed": 0, "lambda": 0.0})
            out = np.empty(len(X))
            for i, row in enumerate(X):
                out[i] = forest.score(row)
                forest.update(row)
            return out

        wall, cpu, s = timed(krcf_stream, slow_repeats)
        krcf_rate = len(X) / wall
        rows.append(("krcf (AWS Rust core)", "streaming", len(X), wall, cpu, krcf_rate, roc_auc_score(y[warm:], s[warm:]), ""))
    except ImportError:
        print("krcf not installed: pip install -e '.[bench]'")

    # rrcf: the paper's reference implementation in pure Python, timed on a subset
    rrcf_rate = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import rrcf
        k = min(args.rrcf_records, len(X))

        def rrcf_batch():
            rng = np.random.default_rng(0)
            w0 = time.perf_counter()
            trees = [rrcf.RCTree(X[rng.choice(len(X), m, replace=False)], random_state=t) for t in range(T)]
            build = time.perf_counter() - w0
            for i in range(k):  # every record against every tree: insert, CoDisp, forget
                for tree in trees:
                    tree.insert_point(X[i], index="query")
                    tree.codisp("query")
                    tree.forget_point("query")
            return build

        wall, cpu, build = timed(rrcf_batch, slow_repeats)
        score_rate = k / (wall - build)
        projected = build + len(X) / score_rate
        rows.append(("rrcf (pure Python)", "batch fit+score", k, wall, cpu, len(X) / projected, None,
                     f"{k} records timed; fit+score of {len(X)} projected at {projected:.0f} s"))

        def rrcf_stream():
            forest = [rrcf.RCTree() for _ in range(T)]
            n = 2 * k  # past the point where trees are full, so forgetting is timed too
            for i in range(n):
                for tree in forest:
                    if len(tree.leaves) > m:
                        tree.forget_point(i - m - 1)
                    tree.insert_point(X[i], index=i)
                    tree.codisp(i)
            return n

        wall, cpu, n = timed(rrcf_stream, slow_repeats)
        rrcf_rate = n / wall
        rows.append(("rrcf (pure Python)", "streaming", n, wall, cpu, rrcf_rate, None, f"first {n} records"))
    except ImportError:
        print("rrcf not installed: pip install -e '.[bench]' (with setuptools<81)")

    # GPU: batch scoring of many records with the torch scorer, beside the CPU kernel
    gpu_line = "GPU: not measured (no CUDA device in this run)"
    on_cuda = args.torch_device.startswith("cuda")
    if torch.cuda.is_available() or not on_cuda:
        big, _ = shingled_stream(args.gpu_records, seed=1)
        forest = rcf.RandomCutForest(T, m, seed=0).fit(big)
        forest.score(big[:1000], device=args.torch_device)  # moves the forest to the device once

        def gpu_score():
            out = forest.score(big, device=args.torch_device)
            if on_cuda:
                torch.cuda.synchronize()
            return out

        wall, cpu, s_gpu = timed(gpu_score, args.repeats)
        where = torch.cuda.get_device_name(0) if on_cuda else "torch on the CPU"
        rows.append((f"ours (torch, {args.torch_device})", "batch score", len(big), wall, cpu, len(big) / wall, None, where))
        wall_cpu, cpu_cpu, s_cpu = timed(lambda: forest.score(big), 1)
        rows.append(("ours (numba)", "batch score", len(big), wall_cpu, cpu_cpu, len(big) / wall_cpu, None, "same records, CPU"))
        gpu_line = (f"{'GPU' if on_cuda else 'torch path (CPU, not a GPU number)'}: {len(big):,} records scored at {len(big) / wall:,.0f} "
                    f"records/s, {wall_cpu / wall:.2f}x the numba CPU kernel; max |torch - numba| score difference {np.abs(s_gpu - s_cpu).max():.1e}")

    # the table
    print(f"\n{'implementation':30s} {'mode':16s} {'records':>9s} {'wall s':>8s} {'CPU s':>8s} {'records/s':>11s} {'ROC-AUC':>8s}  note")
    for name, mode, n, wall, cpu, rate, auc, note in rows:
        auc_text = f"{auc:8.3f}" if auc is not None else f"{'-':>8s}"
        print(f"{name:30s} {mode:16s} {n:9,d} {wall:8.2f} {cpu:8.2f} {rate:11,.0f} {auc_text}  {note}")
    print(gpu_line)
    ratios = [f"batch fit+score vs the faster IsolationForest {iforest_best_wall / ours_batch_wall:.2f}x"]
    if krcf_rate:
        ratios.append(f"streaming vs krcf {ours_stream_rate / krcf_rate:.1f}x")
    if rrcf_rate:
        ratios.append(f"streaming vs rrcf {ours_stream_rate / rrcf_rate:.0f}x")
    print(f"headline (ours, wall-clock speed ratios; >1 = ours faster): {'; '.join(ratios)}; ours streams {ours_stream_rate:,.0f} records/s")


if __name__ == "__main__":
    main()
