"""helpers.data.pairs: the rating generator and its noise floor, the sentence-pair generator and its
known answer, and the MovieLens-100k reader on fixtures written in ml-100k's format."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from helpers.data import pairs

FIXTURES = Path(__file__).resolve().parent.parent / "data" / "fixtures" / "movielens"
SEEDS = [0, 1, 2]


# ---------------------------------------------------------------------------------- ratings
@pytest.mark.parametrize("seed", SEEDS)
def test_rating_moments_match_a_monte_carlo_estimate(seed):
    rng = np.random.default_rng(seed)
    latent = rng.uniform(0.0, 6.0, size=4)
    mean, var = pairs.rating_moments(latent, noise=0.9)
    draws = np.clip(np.rint(latent[:, None] + 0.9 * rng.standard_normal((4, 200_000))), 1, 5)
    np.testing.assert_allclose(mean, draws.mean(axis=1), atol=0.01)
    np.testing.assert_allclose(var, draws.var(axis=1), atol=0.02)


def test_rating_moments_far_outside_the_scale_are_certain():
    mean, var = pairs.rating_moments(np.array([50.0, -50.0]), noise=1.0)
    np.testing.assert_allclose(mean, [5.0, 1.0])
    np.testing.assert_allclose(var, [0.0, 0.0], atol=1e-12)
    with pytest.raises(ValueError, match="noise"):
        pairs.rating_moments(np.array([3.0]), noise=0.0)


@pytest.fixture(scope="module")
def small_ratings():
    return pairs.make_ratings(n_users=60, n_items=80, n_ratings=1500, min_ratings_per_user=10, seed=4)


def test_make_ratings_is_movielens_shaped(small_ratings):
    r = small_ratings
    assert len(r) == 1500
    assert r.users.min() >= 1 and r.users.max() <= 60 and r.items.min() >= 1 and r.items.max() <= 80
    assert set(np.unique(r.ratings)) <= {1.0, 2.0, 3.0, 4.0, 5.0}
    assert len({(u, i) for u, i in zip(r.users, r.items)}) == 1500  # no pair rated twice
    assert np.bincount(r.users, minlength=61)[1:].min() >= 10
    assert r.item_genre.shape == (81,) and set(r.item_genre[1:]) <= set(range(len(r.genre_names)))


def test_make_ratings_noise_floor_is_the_rmse_of_the_expected_rating(small_ratings):
    big = pairs.make_ratings(seed=1)
    oracle = np.sqrt(np.mean((big.expected - big.ratings) ** 2))
    assert big.noise_floor() == pytest.approx(oracle, rel=0.01)
    assert small_ratings.noise_floor() == pytest.approx(np.sqrt(small_ratings.variance.mean()))
    # and nothing predicts better than the expected rating
    assert oracle < np.sqrt(np.mean((big.ratings.mean() - big.ratings) ** 2))


def test_make_ratings_same_seed_same_data_other_seed_other_data():
    a, b, c = pairs.make_ratings(50, 60, 1000, min_ratings_per_user=5, seed=3), pairs.make_ratings(50, 60, 1000, min_ratings_per_user=5, seed=3), pairs.make_ratings(50, 60, 1000, min_ratings_per_user=5, seed=4)
    assert np.array_equal(a.ratings, b.ratings) and np.array_equal(a.items, b.items)
    assert not np.array_equal(a.items, c.items)


@pytest.mark.parametrize(
    "kwargs, message",
    [(dict(n_ratings=100), "fewer than min_ratings_per_user"), (dict(n_ratings=10**6), "at most half"), (dict(noise=0.0), "noise"), (dict(latent_dim=0), "latent_dim"), (dict(n_genres=99), "n_genres")],
)
def test_make_ratings_rejects_impossible_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        pairs.make_ratings(**kwargs)


def test_split_ratings_is_a_partition(small_ratings):
    train, valid, test = pairs.split_ratings(small_ratings, (0.8, 0.1, 0.1), seed=0)
    assert (len(train), len(valid), len(test)) == (1200, 150, 150)
    keys = lambda r: {(u, i) for u, i in zip(r.users, r.items)}  # noqa: E731
    assert keys(train) | keys(valid) | keys(test) == keys(small_ratings)
    assert not keys(train) & keys(test)
    with pytest.raises(ValueError, match="fractions"):
        pairs.split_ratings(small_ratings, (0.8, 0.3, 0.1))


# ---------------------------------------------------------------------------------- MovieLens-100k
def test_movielens_reader_parses_the_fixture_in_ml100k_format():
    train, test = pairs.load_movielens_100k(FIXTURES)
    full = pairs.read_movielens_ratings(FIXTURES / "u.data")
    assert len(train) + len(test) == len(full)
    assert train.n_users == test.n_users == int(full.users.max())
    assert train.n_items == test.n_items == int(full.items.max())
    first = (FIXTURES / "ua.base").read_text().splitlines()[0].split("\t")
    assert (train.users[0], train.items[0], train.ratings[0]) == (int(first[0]), int(first[1]), float(first[2]))
    assert train.item_titles[1] == "Toy Story (1995)"
    assert train.genre_names[train.item_genre[2]] == "Action"  # GoldenEye: its first flagged genre
    assert train.expected is None and train.info["dataset"] == "movielens-100k"


def test_movielens_full_split_returns_u_data():
    train, test = pairs.load_movielens_100k(FIXTURES, split="full")
    assert len(train) == len(pairs.read_movielens_ratings(FIXTURES / "u.data")) and len(test) == 0


def test_movielens_missing_offline_says_what_to_download_and_where(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        pairs.load_movielens_100k(tmp_path)
    message = str(err.value)
    assert "ml-100k.zip" in message and str(tmp_path) in message and "u.data" in message and "data_dir" in message


def test_movielens_reader_names_the_file_and_line_of_a_malformed_row(tmp_path):
    (tmp_path / "u.data").write_text("1\t2\t3\t881250949\n1\t2\t9\n")
    with pytest.raises(ValueError, match="u.data line 2"):
        pairs.read_movielens_ratings(tmp_path / "u.data")
    (tmp_path / "u.data").write_text("1\t2\t7\t881250949\n")
    with pytest.raises(ValueError, match="ratings 1..5"):
        pairs.read_movielens_ratings(tmp_path / "u.data")


# ---------------------------------------------------------------------------------- sentence pairs
@pytest.fixture(scope="module")
def task():
    return pairs.make_sentence_pairs(n_train=400, n_validation=50, n_test=300, seed=2)


def test_sentence_pairs_are_right_padded_and_labelled_by_topic(task):
    for split in (task.train, task.validation, task.test):
        for side in (split.in0, split.in1):
            assert side.shape[1] == task.max_seq_len and side.min() >= 0 and side.max() < task.vocab_size
            mask = side != 0
            assert mask[:, 0].all() and not (mask[:, 1:] & ~mask[:, :-1]).any()
            assert mask.sum(axis=1).min() >= 3
        np.testing.assert_array_equal(split.labels, (split.topic0 == split.topic1).astype(int))
    assert 0.4 < task.train.labels.mean() < 0.6
    assert task.vocabulary[0] == "<pad>" and len(set(task.vocabulary)) == task.vocab_size


def test_sentence_topic_words_come_from_the_sentence_topic(task):
    topic_words = {t: set(pairs.TOPIC_WORDS[t].split()) for t in task.topics}
    other = set().union(*topic_words.values())
    for tokens, topic in zip(task.test.in0[:50], task.test.topic0[:50]):
        words = set(task.decode(tokens).split())
        assert words & other <= topic_words[task.topics[topic]]


def test_bayes_scores_match_a_brute_force_sum_over_topic_pairs(task):
    subset = pairs.SentencePairs(task.test.in0[:5], task.test.in1[:5], task.test.labels[:5], task.test.topic0[:5], task.test.topic1[:5])
    n_topics = len(task.topics)

    def likelihood(tokens, topic):
        return np.prod([task.word_probs[topic, t] for t in tokens if t != 0])

    for n in range(5):
        same = differ = 0.0
        for t0, t1 in itertools.product(range(n_topics), repeat=2):
            joint = likelihood(subset.in0[n], t0) * likelihood(subset.in1[n], t1)
            if t0 == t1:
                same += task.positive_fraction * joint / n_topics
            else:
                differ += (1 - task.positive_fraction) * joint / (n_topics * (n_topics - 1))
        assert task.bayes_scores(subset)[n] == pytest.approx(same / (same + differ), rel=1e-6)


def test_bayes_accuracy_is_high_but_short_sentences_leave_doubt(task):
    accuracy = task.bayes_accuracy(task.test)
    assert 0.85 < accuracy < 1.0
    np.testing.assert_allclose(task.topic_posterior(task.test.in0).sum(axis=1), 1.0)


def test_sentence_pairs_same_seed_same_data():
    a, b = pairs.make_sentence_pairs(100, 10, 10, seed=5), pairs.make_sentence_pairs(100, 10, 10, seed=5)
    assert np.array_equal(a.train.in0, b.train.in0) and np.array_equal(a.test.labels, b.test.labels)


@pytest.mark.parametrize("kwargs, message", [(dict(max_len=2), "max_len"), (dict(topic_rate=0.0), "topic_rate"), (dict(n_train=0), "n_train")])
def test_sentence_pairs_reject_bad_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        pairs.make_sentence_pairs(**kwargs)
