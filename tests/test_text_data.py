"""helpers.data.text: the synthetic LDA corpus and the text loaders, on fixtures in real formats."""

from __future__ import annotations

import codecs
import pickle
import urllib.error
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_files
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

from helpers.data import text

FIXTURES = Path(__file__).resolve().parent.parent / "data" / "fixtures" / "text"


# ---- the topic word list ---------------------------------------------------------------------


def test_topic_vocabulary_has_twenty_readable_topics_of_unique_words():
    topics = text.topic_vocabulary()
    assert len(topics) == 20
    assert {"space", "cooking", "hockey", "medicine"} <= set(topics)
    words = [w for ws in topics.values() for w in ws]
    assert len(words) == len(set(words)), "a word belongs to two topics"
    assert all(len(ws) >= 25 for ws in topics.values())


def test_topic_words_survive_countvectorizer_preprocessing():
    words = [w for ws in text.topic_vocabulary().values() for w in ws]
    assert not set(words) & ENGLISH_STOP_WORDS
    assert all(w.isalpha() and w.islower() and len(w) >= 2 for w in words)


def test_topic_vocabulary_rejects_a_word_in_two_topics(tmp_path):
    path = tmp_path / "topics.txt"
    path.write_text("# comment\nspace: orbit rocket\nsky: cloud orbit\n")
    with pytest.raises(ValueError, match="'orbit' is in both"):
        text.topic_vocabulary(path)


def test_topic_vocabulary_rejects_malformed_lines_and_missing_files(tmp_path):
    path = tmp_path / "topics.txt"
    path.write_text("space orbit rocket\n")
    with pytest.raises(ValueError, match="line 1"):
        text.topic_vocabulary(path)
    with pytest.raises(FileNotFoundError, match="path"):
        text.topic_vocabulary(tmp_path / "missing.txt")


# ---- the synthetic corpus --------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_synthetic_corpus_shapes_and_distributions(seed):
    corpus = text.synthetic_corpus(50, 5, doc_length=20, seed=seed)
    docs, doc_topic, topic_word, vocab = corpus  # plain 4-tuple unpacking works
    assert len(docs) == 50 and doc_topic.shape == (50, 5)
    assert topic_word.shape == (5, len(vocab))
    np.testing.assert_allclose(doc_topic.sum(axis=1), 1.0)
    np.testing.assert_allclose(topic_word.sum(axis=1), 1.0)
    assert all(len(d.split()) >= 1 for d in docs)
    assert set(" ".join(docs).split()) <= set(vocab)


def test_each_synthetic_topic_puts_its_mass_on_its_own_words_only():
    topics = text.topic_vocabulary()
    corpus = text.synthetic_corpus(5, 4, seed=0)
    for k, name in enumerate(list(topics)[:4]):
        support = {corpus.vocab[v] for v in np.flatnonzero(corpus.topic_word[k])}
        assert support <= set(topics[name])


def test_synthetic_corpus_is_reproducible_from_its_seed():
    a = text.synthetic_corpus(30, 6, seed=7, filler_rate=0.2)
    b = text.synthetic_corpus(30, 6, seed=7, filler_rate=0.2)
    c = text.synthetic_corpus(30, 6, seed=8, filler_rate=0.2)
    assert a.docs == b.docs and np.array_equal(a.doc_topic, b.doc_topic)
    assert a.docs != c.docs


def test_synthetic_word_frequencies_follow_the_generative_process():
    # Expected frequency of word v: mean_d sum_k theta_dk beta_kv (lengths independent of topics).
    corpus = text.synthetic_corpus(3000, 3, doc_length=60, alpha=1.0, seed=3)
    counts = {w: 0 for w in corpus.vocab}
    for doc in corpus.docs:
        for w in doc.split():
            counts[w] += 1
    observed = np.array([counts[w] for w in corpus.vocab], dtype=float)
    observed /= observed.sum()
    expected = corpus.doc_topic.mean(axis=0) @ corpus.topic_word
    assert np.abs(observed - expected).max() < 0.01


def test_filler_words_appear_at_the_requested_rate_and_are_stop_words():
    corpus = text.synthetic_corpus(400, 4, doc_length=50, filler_rate=0.3, seed=0)
    tokens = " ".join(corpus.docs).split()
    filler = [t for t in tokens if t not in set(corpus.vocab)]
    assert set(filler) <= ENGLISH_STOP_WORDS
    assert abs(len(filler) / len(tokens) - 0.3) < 0.02


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"num_docs": 0}, "num_docs"),
        ({"num_docs": 5, "num_topics": 0}, "num_topics"),
        ({"num_docs": 5, "num_topics": 21}, "num_topics"),
        ({"num_docs": 5, "alpha": 0.0}, "alpha"),
        ({"num_docs": 5, "eta": -1.0}, "eta"),
        ({"num_docs": 5, "doc_length": 0.5}, "doc_length"),
        ({"num_docs": 5, "filler_rate": 1.0}, "filler_rate"),
    ],
)
def test_synthetic_corpus_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        text.synthetic_corpus(**kwargs)


# ---- local loaders ---------------------------------------------------------------------------


def test_text_folder_labels_documents_by_subfolder():
    corpus = text.load_text_folder(FIXTURES / "folder")
    assert len(corpus.docs) == 4
    assert corpus.label_names == ["hockey", "space"]
    assert corpus.labels.tolist() == [0, 0, 1, 1]
    assert "goalie" in corpus.docs[0]
    assert "Café" in corpus.docs[3]  # UTF-8 decoded


def test_text_folder_without_subfolders_is_unlabelled(tmp_path):
    (tmp_path / "a.txt").write_text("orbit rocket")
    (tmp_path / "b.txt").write_text("puck goalie")
    (tmp_path / "notes.md").write_text("not a document")
    corpus = text.load_text_folder(tmp_path)
    assert corpus.docs == ["orbit rocket", "puck goalie"]
    assert corpus.labels is None and corpus.label_names == []


def test_text_folder_errors_name_the_problem(tmp_path):
    with pytest.raises(ValueError, match="no \\*.txt files"):
        text.load_text_folder(tmp_path)
    with pytest.raises(FileNotFoundError, match="not a folder"):
        text.load_text_folder(tmp_path / "missing")
    (tmp_path / "a.txt").write_text("orbit")
    (tmp_path / "space").mkdir()
    (tmp_path / "space" / "b.txt").write_text("rocket")
    with pytest.raises(ValueError, match="label all or none"):
        text.load_text_folder(tmp_path)


def test_jsonl_reads_text_and_string_labels_skipping_blank_lines():
    corpus = text.load_jsonl(FIXTURES / "docs.jsonl")
    assert len(corpus.docs) == 4
    assert corpus.label_names == ["hockey", "space"]
    assert corpus.labels.tolist() == [0, 1, 0, 1]


def test_jsonl_without_labels_and_with_integer_labels(tmp_path):
    corpus = text.load_jsonl(FIXTURES / "docs_unlabelled.jsonl")
    assert corpus.labels is None and len(corpus.docs) == 2
    path = tmp_path / "ints.jsonl"
    path.write_text('{"text": "a b", "label": 10}\n{"text": "c d", "label": 2}\n')
    corpus = text.load_jsonl(path)
    assert corpus.label_names == ["2", "10"]  # numeric order, not string order
    assert corpus.labels.tolist() == [1, 0]


def test_jsonl_errors_give_the_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "fine"}\n{"body": "no text field"}\n')
    with pytest.raises(ValueError, match="line 2 .* 'text'"):
        text.load_jsonl(path)
    path.write_text('{"text": "fine"}\nnot json\n')
    with pytest.raises(ValueError, match="line 2 .* not valid JSON"):
        text.load_jsonl(path)
    path.write_text("\n")
    with pytest.raises(ValueError, match="no documents"):
        text.load_jsonl(path)


def test_load_text_corpus_dispatches_on_folder_or_jsonl(tmp_path):
    assert len(text.load_text_corpus(FIXTURES / "folder").docs) == 4
    assert len(text.load_text_corpus(FIXTURES / "docs.jsonl").docs) == 4
    (tmp_path / "table.csv").write_text("text\nhello\n")
    with pytest.raises(ValueError, match="data_path"):
        text.load_text_corpus(tmp_path / "table.csv")
    with pytest.raises(FileNotFoundError, match="data_path"):
        text.load_text_corpus(tmp_path / "missing")


# ---- 20 Newsgroups ---------------------------------------------------------------------------


def _newsgroups_cache(data_home: Path) -> None:
    """Write scikit-learn's 20 Newsgroups cache (a zlib-compressed pickle of load_files bunches)
    from the fixture messages, exactly as fetch_20newsgroups stores a finished download."""
    root = FIXTURES / "20news-bydate"
    cache = {
        "train": load_files(root / "20news-bydate-train", encoding="latin1"),
        "test": load_files(root / "20news-bydate-test", encoding="latin1"),
    }
    (data_home / "20news-bydate_py3.pkz").write_bytes(codecs.encode(pickle.dumps(cache), "zlib_codec"))


def test_20newsgroups_strips_headers_footers_and_quotes(tmp_path):
    _newsgroups_cache(tmp_path)
    corpus = text.load_20newsgroups("train", data_home=tmp_path, download=False)
    assert corpus.label_names == ["rec.sport.hockey", "sci.space"]
    assert len(corpus.docs) == 3 and sorted(corpus.labels.tolist()) == [0, 0, 1]
    everything = "\n".join(corpus.docs)
    assert "Penguins" in everything and "satellite payload" in everything
    assert "From:" not in everything and "Subject:" not in everything  # headers
    assert "Bruins will win" not in everything and "writes:" not in everything  # quoted replies
    assert "Skate to where" not in everything and "Orbital Mechanic" not in everything  # signatures


def test_20newsgroups_test_subset_and_categories(tmp_path):
    _newsgroups_cache(tmp_path)
    corpus = text.load_20newsgroups("test", data_home=tmp_path, categories=["sci.space"], download=False)
    assert corpus.label_names == ["sci.space"]
    assert len(corpus.docs) == 1 and "comet" in corpus.docs[0]


def test_20newsgroups_offline_says_what_to_download_and_where(tmp_path, monkeypatch):
    import sklearn.datasets._twenty_newsgroups as twenty

    def no_network(*args, **kwargs):
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr(twenty, "_fetch_remote", no_network)
    with pytest.raises(ConnectionError) as info:
        text.load_20newsgroups("train", data_home=tmp_path / "home")
    message = str(info.value)
    assert "20news-bydate" in message and "figshare" in message
    assert str(tmp_path / "home") in message and "synthetic" in message


def test_20newsgroups_without_download_and_cache_fails_clearly(tmp_path):
    with pytest.raises(ConnectionError, match="20news-bydate_py3.pkz"):
        text.load_20newsgroups("train", data_home=tmp_path, download=False)
    with pytest.raises(ValueError, match="subset"):
        text.load_20newsgroups("validation", data_home=tmp_path)


def test_fixture_messages_are_in_the_real_newsgroup_format():
    # Every fixture message has a header block ended by a blank line, as in 20news-bydate.
    for path in (FIXTURES / "20news-bydate").rglob("*"):
        if path.is_file():
            head = path.read_text().split("\n\n", 1)[0]
            assert head.startswith("From: ") and "Subject: " in head
