"""Neural Topic Model benchmark: our NTM (NVDM-style, SageMaker's) and ProdLDA against scikit-learn's
LatentDirichletAllocation on the same corpus, vocabulary and number of topics.

Reports NPMI (top 10 words, held-out documents), topic diversity (top 25), recovery of the true topics
(synthetic corpus), training wall time and inference documents per second, as medians over repeats
(seeds 0, 1, ...). Ours runs on --device (CUDA when available with "auto"); scikit-learn runs on the CPU.
The last line is the headline: LDA's training time over ProdLDA's, with both NPMIs.

    .venv/bin/python benchmarks/ntm.py                      # synthetic corpus, 3 repeats
    .venv/bin/python benchmarks/ntm.py --dataset 20newsgroups --docs 11000 --feature-dim 2000
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from sklearn.decomposition import LatentDirichletAllocation

from helpers import topics as T
from helpers.data import text
from helpers.device import get_device, seed_everything


def corpus(args, seed):
    """(train counts, test counts, true topic-word on the vocabulary or None, vocabulary size)."""
    if args.dataset == "synthetic":
        data = text.synthetic_corpus(args.docs + args.test_docs, num_topics=args.topics, alpha=0.1, filler_rate=0.15, seed=seed)
        docs = data.docs
    else:
        train, test = text.load_20newsgroups("train"), text.load_20newsgroups("test")
        docs = (train.docs + test.docs)[: args.docs + args.test_docs]
    bow = T.bag_of_words(docs[: args.docs], feature_dim=args.feature_dim, max_df=0.95, min_df=2,
                         min_words=25 if args.dataset == "20newsgroups" else 1)
    test_counts = bow.vectorizer.transform(docs[args.docs :]).tocsr()
    test_counts = test_counts[np.flatnonzero(test_counts.getnnz(axis=1) > 0)]
    true = T.align_topics(data.topic_word, data.vocab, bow.vocab) if args.dataset == "synthetic" else None
    return bow.counts, test_counts, true, len(bow.vocab)


def judge(topic_word, test_counts, true):
    return {
        "npmi": float(T.npmi_coherence(T.top_words(topic_word, 10), test_counts).mean()),
        "diversity": T.topic_diversity(T.top_words(topic_word, 25)),
        "recovery": float("nan") if true is None else T.topic_recovery(topic_word, true).mean_cosine,
    }


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def run_ours(variant, train_counts, test_counts, true, vocab_size, args, seed, device):
    x_train, x_test = T.to_tensor(train_counts, device), T.to_tensor(test_counts, device)
    n_valid = max(1, len(x_train) // 10)  # early stopping watches a tenth held out of the training documents
    torch.manual_seed(seed)
    model = T.NeuralTopicModel(vocab_size, args.topics, variant=variant)
    sync(device)
    start = time.perf_counter()
    T.train_topic_model(model, x_train[n_valid:], x_train[:n_valid], epochs=args.epochs, mini_batch_size=args.mini_batch_size,
                        optimizer="adam", learning_rate=args.learning_rate, num_patience_epochs=args.num_patience_epochs,
                        seed=seed, progress=False)
    sync(device)
    seconds = time.perf_counter() - start
    T.infer_topics(model, x_test)  # warm-up
    sync(device)
    start = time.perf_counter()
    T.infer_topics(model, x_test)
    sync(device)
    docs_per_second = len(x_test) / (time.perf_counter() - start)
    return {**judge(model.topic_word().cpu().numpy(), test_counts, true), "train s": seconds, "infer docs/s": docs_per_second}


def run_lda(train_counts, test_counts, true, args, seed):
    start = time.perf_counter()
    lda = LatentDirichletAllocation(n_components=args.topics, random_state=seed).fit(train_counts)  # scikit-learn's defaults
    seconds = time.perf_counter() - start
    start = time.perf_counter()
    lda.transform(test_counts)
    docs_per_second = test_counts.shape[0] / (time.perf_counter() - start)
    topic_word = lda.components_ / lda.components_.sum(axis=1, keepdims=True)
    return {**judge(topic_word, test_counts, true), "train s": seconds, "infer docs/s": docs_per_second}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", choices=["synthetic", "20newsgroups"], default="synthetic")
    parser.add_argument("--docs", type=int, default=4000, help="training documents")
    parser.add_argument("--test-docs", type=int, default=1000, help="held-out documents (NPMI reference, inference)")
    parser.add_argument("--topics", type=int, default=20)
    parser.add_argument("--feature-dim", type=int, default=2000, help="vocabulary cap")
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--num-patience-epochs", type=int, default=6)
    parser.add_argument("--mini-batch-size", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=0.01)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    device = get_device(args.device)

    runs: dict[str, list[dict[str, float]]] = {"NTM (NVDM, ours)": [], "ProdLDA (ours)": [], "sklearn LDA (CPU)": []}
    for repeat in range(args.repeats):
        seed_everything(repeat)
        train_counts, test_counts, true, vocab_size = corpus(args, repeat)
        runs["NTM (NVDM, ours)"].append(run_ours("nvdm", train_counts, test_counts, true, vocab_size, args, repeat, device))
        runs["ProdLDA (ours)"].append(run_ours("prodlda", train_counts, test_counts, true, vocab_size, args, repeat, device))
        runs["sklearn LDA (CPU)"].append(run_lda(train_counts, test_counts, true, args, repeat))
        print(f"repeat {repeat + 1}/{args.repeats} done", flush=True)

    print(f"\ndevice (ours): {device}{' ' + torch.cuda.get_device_name(device) if device.type == 'cuda' else ''}; "
          f"CPU threads: {torch.get_num_threads()}; dataset: {args.dataset}, {args.docs} training documents, "
          f"vocabulary {vocab_size}, K={args.topics}; medians of {args.repeats} repeats (seeds 0..{args.repeats - 1})")
    columns = ["npmi", "diversity", "recovery", "train s", "infer docs/s"]
    print(f"{'model':20s} " + " ".join(f"{c:>13s}" for c in columns))
    median = {name: {c: statistics.median(r[c] for r in rows) for c in columns} for name, rows in runs.items()}
    for name, values in median.items():
        print(f"{name:20s} " + " ".join(f"{values[c]:13.3f}" if c != "infer docs/s" else f"{values[c]:13.0f}" for c in columns))
    ours, lda = median["ProdLDA (ours)"], median["sklearn LDA (CPU)"]
    print(f"LDA train time / ProdLDA train time: {lda['train s'] / ours['train s']:.2f}x "
          f"(NPMI ProdLDA {ours['npmi']:.3f} vs LDA {lda['npmi']:.3f}; diversity {ours['diversity']:.2f})")


if __name__ == "__main__":
    main()
