"""Pair data for Object2Vec (notebooks/03_object2vec.ipynb): user-item ratings with a known noise
floor, sentence pairs with a known answer, and the MovieLens-100k loader.

Token ids follow one contract everywhere: id 0 is padding, real tokens are 1..vocab_size-1.
"""

from __future__ import annotations

import io
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.special import ndtr

RATING_LEVELS = np.arange(1, 6)  # MovieLens' 1..5 stars

GENRES = ("action", "comedy", "drama", "romance", "thriller", "sci-fi", "animation", "documentary")


# --------------------------------------------------------------------------------------------
# Ratings from a latent-factor model with genre structure
# --------------------------------------------------------------------------------------------
@dataclass
class Ratings:
    """Explicit ratings as parallel arrays; user and item ids start at 1 (0 is padding).

    users, items: (N,) int64 ids; ratings: (N,) float32 stars.
    expected:  (N,) E[rating | user, item] under the generator (None for real data).
    variance:  (N,) Var[rating | user, item] under the generator (None for real data).
    item_genre: (n_items + 1,) genre index per item id (entry 0 unused; None when unknown).
    """

    users: np.ndarray
    items: np.ndarray
    ratings: np.ndarray
    n_users: int
    n_items: int
    expected: np.ndarray | None = None
    variance: np.ndarray | None = None
    item_genre: np.ndarray | None = None
    genre_names: tuple[str, ...] = ()
    item_titles: list[str] | None = None
    info: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ratings)

    def subset(self, index: np.ndarray) -> "Ratings":
        """The ratings at `index` (same users, items and metadata)."""
        pick = lambda a: None if a is None else a[index]  # noqa: E731
        return Ratings(
            self.users[index], self.items[index], self.ratings[index], self.n_users, self.n_items,
            pick(self.expected), pick(self.variance), self.item_genre, self.genre_names, self.item_titles, dict(self.info),
        )

    def noise_floor(self) -> float:
        """The RMSE of the best possible predictor, E[rating | user, item], on these ratings
        (in expectation over the rating noise): sqrt(mean Var[rating | user, item])."""
        if self.variance is None:
            raise ValueError("noise_floor: only generated ratings know their noise floor")
        return float(np.sqrt(np.mean(self.variance)))


def rating_moments(latent: np.ndarray, noise: float) -> tuple[np.ndarray, np.ndarray]:
    """Mean and variance of the stars r = clip(round(latent + e), 1, 5), e ~ N(0, noise^2).

    latent: (N,) real-valued latent ratings. Returns (mean (N,), variance (N,)), exact (normal CDF).
    """
    latent = np.asarray(latent, dtype=np.float64)
    if noise <= 0:
        raise ValueError(f"noise: expected a positive standard deviation, got {noise}")
    # P(r = k) = P(k - 0.5 < latent + e <= k + 0.5), the two end levels take the tails.
    edges = np.array([-np.inf, 1.5, 2.5, 3.5, 4.5, np.inf])
    cdf = ndtr((edges[None, :] - latent[:, None]) / noise)  # (N, 6)
    probs = np.diff(cdf, axis=1)  # (N, 5)
    mean = probs @ RATING_LEVELS
    second = probs @ RATING_LEVELS.astype(np.float64) ** 2
    return mean, np.maximum(second - mean**2, 0.0)


def make_ratings(
    n_users: int = 943,
    n_items: int = 1682,
    n_ratings: int = 100_000,
    n_genres: int = 8,
    latent_dim: int = 1,
    item_spread: float = 0.15,
    taste_scale: float = 0.85,
    item_bias_scale: float = 0.2,
    user_bias_scale: float = 0.2,
    noise: float = 1.2,
    min_ratings_per_user: int = 20,
    global_mean: float = 3.55,
    seed: int = 0,
) -> Ratings:
    """MovieLens-like ratings from a latent-factor model with genre structure.

    Each genre is a point in a `latent_dim`-dimensional taste space (evenly spaced on a line for 1,
    on a circle for 2, random unit vectors beyond); an item's factor q_i is its genre's point plus
    N(0, item_spread^2) noise. A user has a taste p_u ~ N(0, taste_scale^2 I) and a bias, an item a
    bias. The default has one taste axis: with ~100 ratings per user and ~60 per item, each latent
    dimension costs a learner about (n_users + n_items) / n_train of the noise variance, so one axis
    keeps the noise floor within reach of a model fit to 100k ratings. The latent rating
    `global_mean + b_u + b_i + p_u . q_i` is turned into 1..5 stars by adding N(0, noise^2) noise,
    rounding and clipping, so E[r | u, i] and Var[r | u, i] are known exactly (`rating_moments`).
    Users rate at least `min_ratings_per_user` items with a heavy-tailed activity; item popularity
    is heavy-tailed too. No (user, item) pair appears twice.

    Returns a `Ratings` with ids starting at 1 and `expected`/`variance` filled in.
    """
    for name, value, low in (("n_users", n_users, 2), ("n_items", n_items, 2), ("n_genres", n_genres, 1), ("n_ratings", n_ratings, 1)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"{name}: expected an integer >= {low}, got {value!r}")
    if isinstance(latent_dim, bool) or not isinstance(latent_dim, (int, np.integer)) or latent_dim < 1:
        raise ValueError(f"latent_dim: expected an integer >= 1, got {latent_dim!r}")
    if n_genres > len(GENRES):
        raise ValueError(f"n_genres: expected at most {len(GENRES)}, got {n_genres}")
    if min_ratings_per_user * n_users > n_ratings:
        raise ValueError(
            f"n_ratings: {n_ratings} is fewer than min_ratings_per_user * n_users = {min_ratings_per_user * n_users}"
        )
    if n_ratings > n_users * n_items // 2:
        raise ValueError(f"n_ratings: expected at most half of n_users * n_items = {n_users * n_items // 2}, got {n_ratings}")
    for name, value in (("taste_scale", taste_scale), ("item_bias_scale", item_bias_scale), ("user_bias_scale", user_bias_scale)):
        if not value >= 0:
            raise ValueError(f"{name}: expected a number >= 0, got {value}")
    if not noise > 0:
        raise ValueError(f"noise: expected a positive number, got {noise}")
    rng = np.random.default_rng(seed)

    item_genre = rng.integers(0, n_genres, size=n_items)  # (n_items,)
    # Genres are unit directions in a small taste space; items scatter around their genre's.
    if latent_dim == 1:
        # Genres sit on one taste axis, half on each side and none near the middle (every genre is
        # loved by one kind of viewer and disliked by the other), in an order drawn from the seed.
        side = np.where(np.arange(n_genres) % 2 == 0, 1.0, -1.0)
        centres = (side * np.linspace(0.6, 1.0, n_genres))[rng.permutation(n_genres)][:, None]
    elif latent_dim == 2:
        # Evenly spaced on the circle: opposite genres appeal to opposite tastes.
        angle = rng.uniform(0, 2 * np.pi) + 2 * np.pi * np.arange(n_genres) / n_genres
        centres = np.stack([np.cos(angle), np.sin(angle)], axis=1)
    else:
        centres = rng.standard_normal((n_genres, latent_dim))
        centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    item_factor = centres[item_genre] + item_spread * rng.standard_normal((n_items, latent_dim))
    user_taste = taste_scale * rng.standard_normal((n_users, latent_dim))
    user_bias = user_bias_scale * rng.standard_normal(n_users)
    item_bias = item_bias_scale * rng.standard_normal(n_items)

    # Heavy-tailed activity: every user rates at least the minimum, the rest is shared log-normally.
    weight = rng.lognormal(0.0, 1.0, size=n_users)
    extra = np.floor(weight / weight.sum() * (n_ratings - min_ratings_per_user * n_users)).astype(np.int64)
    per_user = min_ratings_per_user + extra
    per_user[np.argsort(-weight)[: n_ratings - per_user.sum()]] += 1
    # Nobody rates more than half the catalogue; what the cap removes goes to the others.
    cap = n_items // 2
    while per_user.max() > cap:
        surplus = int(np.sum(per_user - cap, where=per_user > cap))
        per_user = np.minimum(per_user, cap)
        room = np.flatnonzero(per_user < cap)
        np.add.at(per_user, rng.choice(room, size=surplus), 1)
    popularity = rng.lognormal(0.0, 1.2, size=n_items)
    popularity /= popularity.sum()

    users, items = [], []
    for user, count in enumerate(per_user):
        # Gumbel top-k: `count` distinct items drawn with probability proportional to popularity.
        keys = np.log(popularity) + rng.gumbel(size=n_items)
        chosen = np.argpartition(-keys, count - 1)[:count]
        users.append(np.full(count, user))
        items.append(chosen)
    users = np.concatenate(users)
    items = np.concatenate(items)
    order = rng.permutation(len(users))
    users, items = users[order], items[order]

    latent = global_mean + user_bias[users] + item_bias[items] + np.einsum("nk,nk->n", user_taste[users], item_factor[items])
    stars = np.clip(np.rint(latent + noise * rng.standard_normal(len(latent))), 1, 5)
    mean, variance = rating_moments(latent, noise)
    genre_of = np.concatenate([[-1], item_genre])  # id 0 is padding
    return Ratings(
        users=(users + 1).astype(np.int64),
        items=(items + 1).astype(np.int64),
        ratings=stars.astype(np.float32),
        n_users=n_users,
        n_items=n_items,
        expected=mean.astype(np.float32),
        variance=variance.astype(np.float32),
        item_genre=genre_of.astype(np.int64),
        genre_names=GENRES[:n_genres],
        item_titles=None,
        info={"source": "make_ratings", "seed": seed, "noise": noise, "n_genres": n_genres, "latent_dim": latent_dim},
    )


def split_ratings(
    ratings: Ratings, fractions: tuple[float, float, float] = (0.8, 0.1, 0.1), seed: int = 0
) -> tuple[Ratings, Ratings, Ratings]:
    """A random train/validation/test split of the ratings (fractions of the ratings)."""
    if len(fractions) != 3 or any(f < 0 for f in fractions) or not np.isclose(sum(fractions), 1.0):
        raise ValueError(f"fractions: expected three non-negative fractions summing to 1, got {fractions}")
    order = np.random.default_rng(seed).permutation(len(ratings))
    n_train = int(round(fractions[0] * len(ratings)))
    n_valid = int(round(fractions[1] * len(ratings)))
    return (
        ratings.subset(order[:n_train]),
        ratings.subset(order[n_train : n_train + n_valid]),
        ratings.subset(order[n_train + n_valid :]),
    )


# --------------------------------------------------------------------------------------------
# MovieLens-100k (GroupLens ml-100k)
# --------------------------------------------------------------------------------------------
MOVIELENS_URL = "https://files.grouplens.org/datasets/movielens/ml-100k.zip"
MOVIELENS_FILES = ("u.data", "ua.base", "ua.test")
MOVIELENS_HELP = (
    "MovieLens-100k is not in {where}. Download {url} (GroupLens; free for research, see its README "
    "for the licence), unzip it and pass the folder holding u.data, ua.base and ua.test as data_dir "
    "(e.g. data/ml-100k), or run with download=True where there is internet."
)


def read_movielens_ratings(path: str | Path, n_users: int | None = None, n_items: int | None = None) -> Ratings:
    """One ml-100k ratings file (u.data, ua.base, ua.test, ...): tab-separated
    `user id | item id | rating | timestamp` lines, ids starting at 1."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"path: {str(path)!r} does not exist")
    rows = []
    for number, line in enumerate(path.read_text(encoding="latin-1").splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != 4:
            raise ValueError(f"{path.name} line {number}: expected 4 tab-separated fields (user, item, rating, timestamp), got {len(fields)}")
        try:
            user, item, rating, _ = (int(f) for f in fields)
        except ValueError as err:
            raise ValueError(f"{path.name} line {number}: expected integers, got {line!r}") from err
        if user < 1 or item < 1 or not 1 <= rating <= 5:
            raise ValueError(f"{path.name} line {number}: ids must be >= 1 and ratings 1..5, got {line!r}")
        rows.append((user, item, rating))
    if not rows:
        raise ValueError(f"{path.name}: no ratings")
    data = np.array(rows, dtype=np.int64)
    n_users = int(data[:, 0].max()) if n_users is None else n_users
    n_items = int(data[:, 1].max()) if n_items is None else n_items
    return Ratings(data[:, 0], data[:, 1], data[:, 2].astype(np.float32), n_users, n_items, info={"source": str(path)})


def _read_movielens_items(directory: Path, n_items: int) -> tuple[np.ndarray | None, tuple[str, ...], list[str] | None]:
    """Genre index (the first flagged genre) and title per item from u.item/u.genre, when present."""
    item_path, genre_path = directory / "u.item", directory / "u.genre"
    if not item_path.is_file() or not genre_path.is_file():
        return None, (), None
    genre_names = tuple(
        line.split("|")[0] for line in genre_path.read_text(encoding="latin-1").splitlines() if line.strip()
    )
    genre = np.full(n_items + 1, -1, dtype=np.int64)
    titles = [""] * (n_items + 1)
    for number, line in enumerate(item_path.read_text(encoding="latin-1").splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split("|")
        if len(fields) != 5 + len(genre_names):
            raise ValueError(f"u.item line {number}: expected {5 + len(genre_names)} '|'-separated fields, got {len(fields)}")
        item = int(fields[0])
        if item > n_items:
            continue
        titles[item] = fields[1]
        flags = [i for i, flag in enumerate(fields[5:]) if flag.strip() == "1"]
        genre[item] = flags[0] if flags else -1
    return genre, genre_names, titles


def load_movielens_100k(
    data_dir: str | Path | None = None, split: str = "ua", download: bool = False
) -> tuple[Ratings, Ratings]:
    """MovieLens-100k's train and test ratings: `split="ua"` gives (ua.base, ua.test), `"full"`
    gives (u.data, an empty test set). Titles and genres come from u.item/u.genre when present.

    data_dir: the folder with u.data, ua.base, ua.test (default data/ml-100k in the repository).
    download: fetch the official zip into data_dir when the files are missing.
    """
    if split not in ("ua", "full"):
        raise ValueError(f"split: expected 'ua' or 'full', got {split!r}")
    directory = Path(data_dir) if data_dir is not None else Path(__file__).resolve().parents[2] / "data" / "ml-100k"
    missing = [name for name in MOVIELENS_FILES if not (directory / name).is_file()]
    if missing and download:
        _download_movielens(directory)
        missing = [name for name in MOVIELENS_FILES if not (directory / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"data_dir: missing {missing}. " + MOVIELENS_HELP.format(where=str(directory), url=MOVIELENS_URL)
        )
    full = read_movielens_ratings(directory / "u.data")
    n_users, n_items = full.n_users, full.n_items
    genre, genre_names, titles = _read_movielens_items(directory, n_items)
    if split == "full":
        train = full
        test = full.subset(np.zeros(0, dtype=np.int64))
    else:
        train = read_movielens_ratings(directory / "ua.base", n_users, n_items)
        test = read_movielens_ratings(directory / "ua.test", n_users, n_items)
    for part in (train, test):
        if len(part) and (part.users.max() > n_users or part.items.max() > n_items):
            raise ValueError(f"{part.info.get('source')}: ids beyond those in u.data ({n_users} users, {n_items} items)")
        part.item_genre, part.genre_names, part.item_titles = genre, genre_names, titles
        part.info["dataset"] = "movielens-100k"
    return train, test


def _download_movielens(directory: Path) -> None:
    try:
        with urllib.request.urlopen(MOVIELENS_URL, timeout=30) as response:
            payload = response.read()
    except (urllib.error.URLError, OSError) as err:
        raise FileNotFoundError(
            f"download: could not fetch {MOVIELENS_URL} ({err}). "
            + MOVIELENS_HELP.format(where=str(directory), url=MOVIELENS_URL)
        ) from err
    directory.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(io.BytesIO(payload)) as archive:
        for member in archive.namelist():
            name = Path(member).name
            if member.startswith("ml-100k/") and name and not member.endswith("/"):
                (directory / name).write_bytes(archive.read(member))


# --------------------------------------------------------------------------------------------
# Sentence pairs: same topic or not
# --------------------------------------------------------------------------------------------
TOPIC_WORDS = {
    "sport": "goal match team coach player score league stadium referee season keeper striker trophy fans tackle",
    "cooking": "recipe oven flour butter garlic onion sauce bake pepper salt dough roast chef kitchen soup",
    "weather": "rain snow storm cloud thunder forecast wind frost hail sunny fog breeze drizzle humid chilly",
    "music": "guitar piano melody rhythm concert album drummer singer chord violin jazz lyrics band tempo chorus",
    "space": "orbit rocket astronaut launch satellite planet moon telescope galaxy comet asteroid lunar gravity nebula crater",
    "finance": "stock bond market investor dividend loan bank mortgage inflation broker profit revenue credit shares budget",
    "garden": "soil seed compost tulip shovel weed mulch prune rose bloom sprout hedge lawn rake orchid",
    "travel": "flight hotel passport luggage airport ticket beach tourist museum journey train suitcase map hostel cruise",
}
FILLER_WORDS = (
    "the a an of and to in is was with for on at it this that we they very some new our their "
    "about from by today again really just"
).split()


@dataclass
class SentencePairs:
    """Labelled sentence pairs. in0, in1: (N, L) int64 token ids right-padded with 0;
    labels: (N,) 1 when both sentences share a topic, else 0; topic0/topic1: (N,) true topics."""

    in0: np.ndarray
    in1: np.ndarray
    labels: np.ndarray
    topic0: np.ndarray
    topic1: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class SentencePairTask:
    """A sentence-pair data set with its generator: vocabulary (id -> word, id 0 is "<pad>"),
    topic names, the word distribution per topic (T, V) and the train/validation/test pairs."""

    vocabulary: list[str]
    topics: tuple[str, ...]
    word_probs: np.ndarray
    max_seq_len: int
    positive_fraction: float
    train: SentencePairs
    validation: SentencePairs
    test: SentencePairs

    @property
    def vocab_size(self) -> int:
        return len(self.vocabulary)

    def decode(self, tokens: np.ndarray) -> str:
        """The words of one padded sentence."""
        return " ".join(self.vocabulary[t] for t in np.asarray(tokens) if t != 0)

    def topic_posterior(self, tokens: np.ndarray) -> np.ndarray:
        """P(topic | sentence) for padded sentences (N, L) under the generator (uniform prior): (N, T)."""
        tokens = np.asarray(tokens)
        logp = np.log(self.word_probs)[:, tokens]  # (T, N, L)
        logp = np.where(tokens[None] != 0, logp, 0.0).sum(axis=2).T  # (N, T)
        logp -= logp.max(axis=1, keepdims=True)
        post = np.exp(logp)
        return post / post.sum(axis=1, keepdims=True)

    def bayes_scores(self, pairs: SentencePairs) -> np.ndarray:
        """P(same topic | both sentences) under the generator, the best possible classifier: (N,)."""
        prior_same = self.positive_fraction
        p0, p1 = self.topic_posterior(pairs.in0), self.topic_posterior(pairs.in1)
        # Under a uniform topic prior, P(same | s0, s1) is proportional to prior_same * sum_t p0 p1 / (1/T).
        n_topics = len(self.topics)
        same = prior_same * n_topics * np.sum(p0 * p1, axis=1)
        differ = (1 - prior_same) * n_topics / (n_topics - 1) * (1 - np.sum(p0 * p1, axis=1))
        return same / (same + differ)

    def bayes_accuracy(self, pairs: SentencePairs) -> float:
        """Accuracy of the best possible classifier (the known answer's ceiling) on `pairs`."""
        return float(np.mean((self.bayes_scores(pairs) > 0.5) == (pairs.labels == 1)))


def make_sentence_pairs(
    n_train: int = 8000,
    n_validation: int = 1000,
    n_test: int = 2000,
    min_len: int = 3,
    max_len: int = 12,
    topic_rate: float = 0.45,
    positive_fraction: float = 0.5,
    seed: int = 0,
) -> SentencePairTask:
    """Sentence pairs labelled 1 when both sentences are about the same topic, else 0.

    A sentence has a topic and a length drawn uniformly from [min_len, max_len]; each word is a
    word of its topic with probability `topic_rate`, else a filler word shared by all topics. Words
    are shuffled, so short sentences can be ambiguous; the best possible accuracy is known
    (`SentencePairTask.bayes_accuracy`). `positive_fraction` of the pairs share a topic.
    """
    for name, value, low in (("n_train", n_train, 1), ("n_validation", n_validation, 0), ("n_test", n_test, 0), ("min_len", min_len, 1)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"{name}: expected an integer >= {low}, got {value!r}")
    if isinstance(max_len, bool) or not isinstance(max_len, (int, np.integer)) or max_len < min_len:
        raise ValueError(f"max_len: expected an integer >= min_len = {min_len}, got {max_len!r}")
    if not 0 < topic_rate <= 1:
        raise ValueError(f"topic_rate: expected a number in (0, 1], got {topic_rate}")
    if not 0 <= positive_fraction <= 1:
        raise ValueError(f"positive_fraction: expected a number in [0, 1], got {positive_fraction}")
    rng = np.random.default_rng(seed)
    topics = tuple(TOPIC_WORDS)
    vocabulary = ["<pad>"] + list(FILLER_WORDS)
    for topic in topics:
        vocabulary += TOPIC_WORDS[topic].split()
    vocab_size = len(vocabulary)
    n_filler = len(FILLER_WORDS)
    word_probs = np.zeros((len(topics), vocab_size))
    start = 1 + n_filler
    for t, topic in enumerate(topics):
        n_words = len(TOPIC_WORDS[topic].split())
        word_probs[t, 1 : 1 + n_filler] = (1 - topic_rate) / n_filler
        word_probs[t, start : start + n_words] = topic_rate / n_words
        start += n_words
    # Tiny mass everywhere keeps the posterior finite; the generator never samples it.
    word_probs_safe = np.where(word_probs > 0, word_probs, 1e-12)

    def sentences(topic_of: np.ndarray) -> np.ndarray:
        lengths = rng.integers(min_len, max_len + 1, size=len(topic_of))
        out = np.zeros((len(topic_of), max_len), dtype=np.int64)
        cdf = np.cumsum(word_probs, axis=1)  # (T, V)
        for n, (topic, length) in enumerate(zip(topic_of, lengths)):
            out[n, :length] = np.searchsorted(cdf[topic], rng.random(length) * cdf[topic, -1], side="right")
        return out

    def pairs(n: int) -> SentencePairs:
        labels = (rng.random(n) < positive_fraction).astype(np.int64)
        topic0 = rng.integers(0, len(topics), size=n)
        other = (topic0 + rng.integers(1, len(topics), size=n)) % len(topics)
        topic1 = np.where(labels == 1, topic0, other)
        return SentencePairs(sentences(topic0), sentences(topic1), labels, topic0, topic1)

    return SentencePairTask(
        vocabulary=vocabulary,
        topics=topics,
        word_probs=word_probs_safe,
        max_seq_len=max_len,
        positive_fraction=float(positive_fraction),
        train=pairs(n_train),
        validation=pairs(n_validation),
        test=pairs(n_test),
    )
