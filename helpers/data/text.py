"""Text corpora for the topic-model notebook: a synthetic LDA corpus over human-readable topics
(offline, from a seed), 20 Newsgroups through scikit-learn, and local folders / JSON Lines files.

Taught in notebooks/02_neural_topic_model.ipynb ("The data"). The topic word list lives in
data/topic_words.txt so other notebooks (e.g. sentence pairs for Object2Vec) can reuse it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[2]
TOPIC_WORDS_PATH = REPO_ROOT / "data" / "topic_words.txt"
NEWSGROUPS_HOME = REPO_ROOT / "data" / "20newsgroups"

# Frequent English function words (all in scikit-learn's English stop-word list), sprinkled into
# synthetic documents so that stop-word removal has something to remove.
FILLER_WORDS = ("the", "and", "of", "to", "is", "in", "it", "that", "was", "for", "on", "with", "as", "this", "be")

NEWSGROUPS_HELP = (
    "20 Newsgroups is downloaded by scikit-learn on first use (20news-bydate.tar.gz, 14 MB, from "
    "https://ndownloader.figshare.com/files/5975967) and cached as 20news-bydate_py3.pkz in {home}. "
    "This machine could not download it ({error}). Run "
    "`helpers.data.text.load_20newsgroups()` once on a machine with internet and copy the cache file "
    "into {home}, or use the default synthetic corpus (dataset='synthetic')."
)


class SyntheticCorpus(NamedTuple):
    """A corpus sampled from LDA's generative process, with the truth it was sampled from.

    docs:       D strings of space-separated words.
    doc_topic:  (D, K) float64, each row the document's topic mixture theta_d (sums to 1).
    topic_word: (K, V) float64, each row a topic's word distribution beta_k over `vocab` (sums to 1).
    vocab:      V words; column v of `topic_word` is `vocab[v]` (filler words are not in it).
    """

    docs: list[str]
    doc_topic: np.ndarray
    topic_word: np.ndarray
    vocab: list[str]


class TextCorpus(NamedTuple):
    """Documents read from disk or a download.

    docs:        D strings.
    labels:      (D,) int64 label index per document, or None when the source has no labels.
    label_names: the name of each label index (empty when there are no labels).
    """

    docs: list[str]
    labels: np.ndarray | None
    label_names: list[str]


def topic_vocabulary(path: str | Path | None = None) -> dict[str, list[str]]:
    """The human-readable topics: {topic name: its words}, in file order.

    The file (default data/topic_words.txt) has one topic a line, `name: word word ...`; blank lines
    and lines starting with `#` are skipped. Words must be unique across topics.
    """
    path = TOPIC_WORDS_PATH if path is None else Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"path: topic word file {str(path)!r} does not exist")
    topics: dict[str, list[str]] = {}
    seen: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, words = line.partition(":")
        if not sep or not name.strip() or not words.split():
            raise ValueError(f"path: line {number} of {path.name} should read 'name: word word ...', got {line!r}")
        name = name.strip()
        if name in topics:
            raise ValueError(f"path: topic {name!r} appears twice in {path.name}")
        for word in words.split():
            if word in seen:
                raise ValueError(f"path: word {word!r} is in both topic {seen[word]!r} and {name!r} of {path.name}")
            seen[word] = name
        topics[name] = words.split()
    if not topics:
        raise ValueError(f"path: {path.name} holds no topics")
    return topics


def synthetic_corpus(
    num_docs: int,
    num_topics: int | None = None,
    *,
    doc_length: float = 80.0,
    alpha: float = 0.1,
    eta: float = 1.0,
    filler_rate: float = 0.0,
    seed: int = 0,
    topics: dict[str, list[str]] | None = None,
) -> SyntheticCorpus:
    """Sample `num_docs` documents from LDA's generative process over human-readable topics.

    For each topic k (the first `num_topics` of `topics`, default `topic_vocabulary()`):
    beta_k ~ Dirichlet(eta) over that topic's own words (zero elsewhere). For each document:
    theta_d ~ Dirichlet(alpha * 1_K), length N_d ~ 1 + Poisson(doc_length - 1), and each word is
    drawn by picking a topic z ~ theta_d, then a word w ~ beta_z. With probability `filler_rate`
    a token is instead a stop word from FILLER_WORDS (not part of `vocab`).

    Returns SyntheticCorpus(docs, doc_topic (D, K), topic_word (K, V), vocab); topic k is named
    `list(topics)[k]`. The same seed gives the same corpus.
    """
    if isinstance(num_docs, bool) or not isinstance(num_docs, (int, np.integer)) or num_docs < 1:
        raise ValueError(f"num_docs: expected an integer >= 1, got {num_docs!r}")
    topics = topic_vocabulary() if topics is None else topics
    if not isinstance(topics, dict) or not topics:
        raise TypeError("topics: expected a non-empty dict of topic name to word list")
    if num_topics is None:
        num_topics = len(topics)
    if isinstance(num_topics, bool) or not isinstance(num_topics, (int, np.integer)) or not 1 <= num_topics <= len(topics):
        raise ValueError(f"num_topics: expected an integer in [1, {len(topics)}], got {num_topics!r}")
    if not doc_length >= 1:
        raise ValueError(f"doc_length: expected a mean document length >= 1, got {doc_length!r}")
    if not alpha > 0:
        raise ValueError(f"alpha: expected a positive Dirichlet concentration, got {alpha!r}")
    if not eta > 0:
        raise ValueError(f"eta: expected a positive Dirichlet concentration, got {eta!r}")
    if not 0 <= filler_rate < 1:
        raise ValueError(f"filler_rate: expected a probability in [0, 1), got {filler_rate!r}")

    rng = np.random.default_rng(seed)
    chosen = list(topics.items())[:num_topics]
    vocab = [word for _, words in chosen for word in words]
    column = {word: v for v, word in enumerate(vocab)}
    topic_word = np.zeros((num_topics, len(vocab)))
    for k, (_, words) in enumerate(chosen):
        topic_word[k, [column[w] for w in words]] = rng.dirichlet(np.full(len(words), eta))

    doc_topic = rng.dirichlet(np.full(num_topics, alpha), size=num_docs)  # (D, K)
    lengths = 1 + rng.poisson(doc_length - 1, size=num_docs)
    cum_topic_word = np.cumsum(topic_word, axis=1)
    cum_topic_word[:, -1] = 1.0  # guard the last bin against float round-off
    words = np.asarray(vocab)
    docs = []
    for d in range(num_docs):
        z = rng.choice(num_topics, size=lengths[d], p=doc_topic[d])  # a topic per token
        w = (cum_topic_word[z] < rng.random(lengths[d])[:, None]).sum(axis=1)  # inverse-CDF word per token
        tokens = words[w].astype(object)
        if filler_rate > 0:
            filler = rng.random(lengths[d]) < filler_rate
            tokens[filler] = rng.choice(FILLER_WORDS, size=int(filler.sum()))
        docs.append(" ".join(tokens))
    return SyntheticCorpus(docs, doc_topic, topic_word, vocab)


def load_20newsgroups(
    subset: str = "train",
    *,
    categories: list[str] | None = None,
    data_home: str | Path | None = None,
    download: bool = True,
) -> TextCorpus:
    """20 Newsgroups via scikit-learn's `fetch_20newsgroups`, with headers, footers and quoted
    replies removed (so topics come from what people wrote, not from e-mail addresses).

    subset: "train" | "test" | "all". The cache lives in `data_home` (default data/20newsgroups).
    Offline without the cache it raises ConnectionError saying what to download and where to put it.
    """
    from sklearn.datasets import fetch_20newsgroups

    if subset not in ("train", "test", "all"):
        raise ValueError(f"subset: expected 'train', 'test' or 'all', got {subset!r}")
    home = Path(data_home) if data_home is not None else NEWSGROUPS_HOME
    home.mkdir(parents=True, exist_ok=True)
    try:
        bunch = fetch_20newsgroups(
            data_home=str(home),
            subset=subset,
            categories=categories,
            remove=("headers", "footers", "quotes"),
            download_if_missing=download,
            shuffle=False,
        )
    except OSError as err:  # URLError, socket errors and "dataset not found" are all OSErrors
        raise ConnectionError(NEWSGROUPS_HELP.format(home=home, error=err)) from err
    return TextCorpus(list(bunch.data), np.asarray(bunch.target, dtype=np.int64), list(bunch.target_names))


def _labels_from_names(names: list[str | None], argument: str) -> tuple[np.ndarray | None, list[str]]:
    if all(name is None for name in names):
        return None, []
    if any(name is None for name in names):
        raise ValueError(f"{argument}: some documents have a label and some do not; label all or none")
    # integer labels ("2" < "10") sort as numbers, names alphabetically
    label_names = sorted(set(names), key=lambda n: (not n.lstrip("-").isdigit(), int(n) if n.lstrip("-").isdigit() else 0, n))  # type: ignore[union-attr]
    index = {name: i for i, name in enumerate(label_names)}
    return np.asarray([index[name] for name in names], dtype=np.int64), label_names


def load_text_folder(path: str | Path, pattern: str = "*.txt") -> TextCorpus:
    """Every file matching `pattern` under `path`, one document each (UTF-8, undecodable bytes
    replaced), in sorted path order. Files directly in `path` are unlabelled; files in a
    sub-folder are labelled by the sub-folder's name (`path/hockey/a.txt` -> "hockey").
    """
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"path: {str(root)!r} is not a folder of {pattern} files")
    files = sorted(p for p in root.rglob(pattern) if p.is_file())
    if not files:
        raise ValueError(f"path: no {pattern} files found under {str(root)!r}")
    docs = [p.read_text(encoding="utf-8", errors="replace") for p in files]
    names = [None if p.parent == root else p.relative_to(root).parts[0] for p in files]
    labels, label_names = _labels_from_names(names, "path")
    return TextCorpus(docs, labels, label_names)


def load_jsonl(path: str | Path, text_field: str = "text", label_field: str = "label") -> TextCorpus:
    """A JSON Lines file, one object a line with the document in `text_field` and optionally a
    label (string or integer) in `label_field`; blank lines are skipped.
    """
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"path: JSON Lines file {str(file)!r} does not exist")
    docs: list[str] = []
    names: list[str | None] = []
    for number, line in enumerate(file.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"path: line {number} of {file.name} is not valid JSON ({err.msg})") from err
        if not isinstance(record, dict) or not isinstance(record.get(text_field), str):
            raise ValueError(f"path: line {number} of {file.name} needs a string field {text_field!r}")
        docs.append(record[text_field])
        label = record.get(label_field)
        names.append(None if label is None else str(label))
    if not docs:
        raise ValueError(f"path: {file.name} holds no documents")
    labels, label_names = _labels_from_names(names, "path")
    return TextCorpus(docs, labels, label_names)


def load_text_corpus(data_path: str | Path) -> TextCorpus:
    """A local corpus: a folder of .txt files (`load_text_folder`) or a .jsonl/.json JSON Lines
    file (`load_jsonl`), chosen by what `data_path` is.
    """
    path = Path(data_path)
    if path.is_dir():
        return load_text_folder(path)
    if path.is_file() and path.suffix.lower() in (".jsonl", ".json"):
        return load_jsonl(path)
    if path.is_file():
        raise ValueError(f"data_path: expected a folder of .txt files or a .jsonl file, got {str(path)!r}")
    raise FileNotFoundError(f"data_path: {str(path)!r} does not exist (a folder of .txt files or a .jsonl file)")
