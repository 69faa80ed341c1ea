"""Neural topic models (SageMaker's NVDM-style NTM and ProdLDA), their ELBO, and the metrics that
judge topics: held-out perplexity, NPMI coherence, topic diversity, topic uniqueness (TU) and
recovery of known topics.

Taught in notebooks/02_neural_topic_model.ipynb. Shapes: D documents, V vocabulary words
(SageMaker's `feature_dim`), K topics (`num_topics`), B a mini-batch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import scipy.sparse as sp
import torch
from scipy.optimize import linear_sum_assignment
from sklearn.feature_extraction.text import CountVectorizer
from torch import nn

from helpers.train import History, fit

# Words of two or more letters: numbers, underscores and one-letter tokens carry no topic.
TOKEN_PATTERN = r"(?u)\b[^\W\d_]{2,}\b"
ACTIVATIONS = {"sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "relu": nn.ReLU}
OPTIMIZERS = ("adadelta", "adam", "sgd", "rmsprop", "adagrad")
VARIANTS = ("nvdm", "prodlda")


# --------------------------------------------------------------------------------------------
# Bag of words
# --------------------------------------------------------------------------------------------


class BagOfWords(NamedTuple):
    """counts: (D_kept, V) int64 CSR word counts; vocab: V words (column order);
    kept: (D_kept,) indices of the input documents that were kept; vectorizer: the fitted
    CountVectorizer (reuse it, or `encode_documents`, for new documents)."""

    counts: sp.csr_matrix
    vocab: list[str]
    kept: np.ndarray
    vectorizer: CountVectorizer


def bag_of_words(
    docs: Sequence[str],
    *,
    feature_dim: int | None = None,
    stop_words: str | list[str] | None = "english",
    min_df: int | float = 1,
    max_df: int | float = 1.0,
    min_words: int = 1,
    vocabulary: Sequence[str] | None = None,
) -> BagOfWords:
    """Word counts of `docs` with scikit-learn's CountVectorizer, the way SageMaker's 20 Newsgroups
    example prepares NTM's input: lower-cased words of 2+ letters, stop words removed, words kept
    if they appear in at least `min_df` and at most `max_df` documents, the `feature_dim` most
    frequent of those (all when None), and documents with fewer than `min_words` counted words
    dropped. With `vocabulary`, exactly those words are counted (in that order).
    """
    if isinstance(docs, str) or not isinstance(docs, Sequence):
        raise TypeError(f"docs: expected a list of strings, got {type(docs).__name__}")
    if len(docs) == 0:
        raise ValueError("docs: the corpus is empty; expected at least one document")
    if not all(isinstance(d, str) for d in docs):
        raise TypeError("docs: every document must be a string")
    if feature_dim is not None and (isinstance(feature_dim, bool) or not isinstance(feature_dim, int) or feature_dim < 1):
        raise ValueError(f"feature_dim: expected None or an integer >= 1, got {feature_dim!r}")
    if isinstance(min_words, bool) or not isinstance(min_words, int) or min_words < 1:
        raise ValueError(f"min_words: expected an integer >= 1, got {min_words!r}")
    vectorizer = CountVectorizer(
        lowercase=True,
        token_pattern=TOKEN_PATTERN,
        stop_words=stop_words,
        min_df=min_df,
        max_df=max_df,
        max_features=feature_dim if vocabulary is None else None,
        vocabulary=list(vocabulary) if vocabulary is not None else None,
        dtype=np.int64,
    )
    try:
        counts = vectorizer.fit_transform(docs).tocsr()
    except ValueError as err:  # "empty vocabulary", or min_df/max_df pruning everything away
        raise ValueError(f"docs: no words left to count ({err}); check stop_words, min_df and max_df") from err
    lengths = np.asarray(counts.sum(axis=1)).ravel()
    kept = np.flatnonzero(lengths >= min_words)
    if kept.size == 0:
        raise ValueError(f"docs: no document has at least min_words={min_words} counted words")
    vocab = vectorizer.get_feature_names_out().tolist()
    return BagOfWords(counts[kept], vocab, kept, vectorizer)


def encode_documents(docs: Sequence[str], vectorizer: CountVectorizer) -> sp.csr_matrix:
    """(D, V) word counts of new `docs` over a fitted vectorizer's vocabulary (for inference).

    Raises ValueError naming the documents that contain no word of the vocabulary: a topic model
    has nothing to say about them.
    """
    if isinstance(docs, str) or not isinstance(docs, Sequence) or len(docs) == 0:
        raise ValueError("docs: expected a non-empty list of strings")
    if not hasattr(vectorizer, "vocabulary_"):
        raise TypeError("vectorizer: expected a fitted CountVectorizer (BagOfWords.vectorizer)")
    counts = vectorizer.transform(docs).tocsr()
    empty = np.flatnonzero(np.asarray(counts.sum(axis=1)).ravel() == 0)
    if empty.size:
        raise ValueError(f"docs: document(s) {empty.tolist()[:10]} contain no word of the model's vocabulary")
    return counts


def to_tensor(counts: sp.spmatrix | np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """(D, V) counts as a dense float32 tensor on `device`."""
    dense = counts.toarray() if sp.issparse(counts) else np.asarray(counts)
    if dense.ndim != 2:
        raise ValueError(f"counts: expected a (D, V) matrix, got shape {dense.shape}")
    return torch.as_tensor(dense, dtype=torch.float32, device=device)


# --------------------------------------------------------------------------------------------
# The model and its ELBO
# --------------------------------------------------------------------------------------------


def encoder_sizes(encoder_layers: str | Sequence[int], num_topics: int) -> list[int]:
    """SageMaker's `encoder_layers`: "auto" is two layers of 3K and 2K units; otherwise a list of
    positive sizes or a comma-separated string such as "100,50"."""
    if isinstance(encoder_layers, str):
        text = encoder_layers.strip().lower()
        if text == "auto":
            return [3 * num_topics, 2 * num_topics]
        try:
            sizes = [int(part) for part in text.split(",")]
        except ValueError as err:
            raise ValueError(f"encoder_layers: expected 'auto' or sizes such as '100,50', got {encoder_layers!r}") from err
    else:
        sizes = list(encoder_layers)
    if not sizes or any(isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 1 for s in sizes):
        raise ValueError(f"encoder_layers: expected 'auto' or positive layer sizes, got {encoder_layers!r}")
    return [int(s) for s in sizes]


def dirichlet_laplace_prior(num_topics: int, alpha: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """ProdLDA's Laplace approximation (in the softmax basis) of a symmetric Dirichlet(alpha)
    prior: a diagonal Gaussian on the logits h with theta = softmax(h). Returns (mean (K,),
    log-variance (K,)): mean_k = log a_k - mean_j log a_j,
    var_k = (1 - 2/K) / a_k + sum_j (1 / a_j) / K^2.
    """
    if isinstance(num_topics, bool) or not isinstance(num_topics, int) or num_topics < 2:
        raise ValueError(f"num_topics: expected an integer >= 2, got {num_topics!r}")
    if not alpha > 0:
        raise ValueError(f"alpha: expected a positive Dirichlet concentration, got {alpha!r}")
    a = torch.full((num_topics,), float(alpha), dtype=torch.float64)
    mean = a.log() - a.log().mean()
    var = (1.0 - 2.0 / num_topics) / a + (1.0 / a).sum() / num_topics**2
    return mean.float(), var.log().float()


class TopicModelOutput(NamedTuple):
    """log_word_probs: (B, V) log p(word | document); mu, logvar: (B, K) the Gaussian posterior
    q(h | document); theta: (B, K) topic weights softmax(h)."""

    log_word_probs: torch.Tensor
    mu: torch.Tensor
    logvar: torch.Tensor
    theta: torch.Tensor


class NeuralTopicModel(nn.Module):
    """A variational autoencoder over bags of words.

    Encoder (SageMaker's NTM): an MLP of `encoder_layers` (default 3K, 2K units) with
    `encoder_layers_activation` (sigmoid | tanh | relu) and optional `batch_norm`, then linear heads
    for the mean and log-variance of a Gaussian q(h | d) over K logits; theta = softmax(h).

    variant="nvdm" (SageMaker's, after Miao et al. 2016/2017): prior N(0, I); decoder
    log_softmax(W theta + b), a mixture in logit space with a background bias b.
    variant="prodlda" (Srivastava & Sutton 2017): prior the Laplace approximation of
    Dirichlet(`prior_alpha`); decoder log_softmax(BatchNorm(W theta)) without bias (a product of
    experts); batch norm on the mean/log-variance heads and dropout `topic_dropout` on theta keep
    topics from collapsing.

    The topic-word matrix is W (`decoder.weight`, (V, K)); `topic_word()` gives each topic's word
    distribution.
    """

    def __init__(
        self,
        feature_dim: int,
        num_topics: int,
        *,
        encoder_layers: str | Sequence[int] = "auto",
        encoder_layers_activation: str = "sigmoid",
        batch_norm: bool = False,
        variant: str = "nvdm",
        prior_alpha: float = 1.0,
        topic_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if isinstance(feature_dim, bool) or not isinstance(feature_dim, int) or feature_dim < 2:
            raise ValueError(f"feature_dim: expected a vocabulary size >= 2, got {feature_dim!r}")
        if isinstance(num_topics, bool) or not isinstance(num_topics, int) or num_topics < 2:
            raise ValueError(f"num_topics: expected an integer >= 2, got {num_topics!r}")
        if num_topics > feature_dim:
            raise ValueError(f"num_topics: {num_topics} topics cannot be told apart with a vocabulary of feature_dim={feature_dim} words")
        if encoder_layers_activation not in ACTIVATIONS:
            raise ValueError(f"encoder_layers_activation: expected one of {sorted(ACTIVATIONS)}, got {encoder_layers_activation!r}")
        if variant not in VARIANTS:
            raise ValueError(f"variant: expected one of {VARIANTS}, got {variant!r}")
        if not 0 <= topic_dropout < 1:
            raise ValueError(f"topic_dropout: expected a probability in [0, 1), got {topic_dropout!r}")
        self.feature_dim, self.num_topics, self.variant = feature_dim, num_topics, variant

        layers: list[nn.Module] = []
        width = feature_dim
        for size in encoder_sizes(encoder_layers, num_topics):
            layers.append(nn.Linear(width, size))
            if batch_norm:
                layers.append(nn.BatchNorm1d(size))
            layers.append(ACTIVATIONS[encoder_layers_activation]())
            width = size
        self.encoder = nn.Sequential(*layers)
        self.mu = nn.Linear(width, num_topics)
        self.logvar = nn.Linear(width, num_topics)
        prodlda = variant == "prodlda"
        # Without normalised heads ProdLDA's posterior collapses onto a few topics (Srivastava & Sutton, sec. 3.3).
        self.mu_norm = nn.BatchNorm1d(num_topics, affine=False) if prodlda else nn.Identity()
        self.logvar_norm = nn.BatchNorm1d(num_topics, affine=False) if prodlda else nn.Identity()
        self.topic_dropout = nn.Dropout(topic_dropout)
        self.decoder = nn.Linear(num_topics, feature_dim, bias=not prodlda)
        self.decoder_norm = nn.BatchNorm1d(feature_dim, affine=False) if prodlda else nn.Identity()
        if prodlda:
            prior_mu, prior_logvar = dirichlet_laplace_prior(num_topics, prior_alpha)
        else:
            prior_mu, prior_logvar = torch.zeros(num_topics), torch.zeros(num_topics)
        self.register_buffer("prior_mu", prior_mu)
        self.register_buffer("prior_logvar", prior_logvar)

    def encode(self, counts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, V) counts -> mean and log-variance of q(h | d), each (B, K)."""
        hidden = self.encoder(counts)
        return self.mu_norm(self.mu(hidden)), self.logvar_norm(self.logvar(hidden))

    def decode(self, theta: torch.Tensor) -> torch.Tensor:
        """(B, K) topic weights -> (B, V) log word probabilities."""
        return torch.log_softmax(self.decoder_norm(self.decoder(theta)), dim=-1)

    def forward(self, counts: torch.Tensor, *, sample: bool | None = None, generator: torch.Generator | None = None) -> TopicModelOutput:
        """Encode, draw h = mu + sigma * eps (the reparameterization trick; the mean when `sample`
        is False, by default in eval mode), theta = softmax(h), decode."""
        if counts.ndim != 2 or counts.shape[1] != self.feature_dim:
            raise ValueError(f"counts: expected shape (B, {self.feature_dim}), got {tuple(counts.shape)}")
        mu, logvar = self.encode(counts)
        sample = self.training if sample is None else sample
        if sample:
            eps = torch.randn(mu.shape, generator=generator, device=mu.device if generator is None else generator.device).to(mu.device)
            h = mu + torch.exp(0.5 * logvar) * eps
        else:
            h = mu
        theta = torch.softmax(h, dim=-1)
        return TopicModelOutput(self.decode(self.topic_dropout(theta)), mu, logvar, theta)

    @torch.no_grad()
    def topic_word(self) -> torch.Tensor:
        """(K, V) each topic's word distribution: what the decoder (in eval mode) predicts for a
        document made of that one topic."""
        was_training = self.training
        self.eval()
        eye = torch.eye(self.num_topics, device=self.decoder.weight.device)
        probs = self.decode(eye).exp()
        self.train(was_training)
        return probs


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor, prior_mu: torch.Tensor | float = 0.0, prior_logvar: torch.Tensor | float = 0.0) -> torch.Tensor:
    """KL( N(mu, diag e^logvar) || N(prior_mu, diag e^prior_logvar) ) per row: (B, K) -> (B,).

    0.5 * sum_k [ e^(logvar - prior_logvar) + (mu - prior_mu)^2 / e^prior_logvar - 1 + prior_logvar - logvar ].
    """
    if mu.shape != logvar.shape:
        raise ValueError(f"logvar: expected the shape of mu {tuple(mu.shape)}, got {tuple(logvar.shape)}")
    prior_mu = torch.as_tensor(prior_mu, dtype=mu.dtype, device=mu.device)
    prior_logvar = torch.as_tensor(prior_logvar, dtype=mu.dtype, device=mu.device)
    terms = torch.exp(logvar - prior_logvar) + (mu - prior_mu) ** 2 / torch.exp(prior_logvar) - 1.0 + prior_logvar - logvar
    return 0.5 * terms.sum(dim=-1)


def reconstruction_nll(counts: torch.Tensor, log_word_probs: torch.Tensor) -> torch.Tensor:
    """-log p(d | theta) = -sum_v n_dv log p(v | theta_d) per document: (B, V), (B, V) -> (B,)."""
    if counts.shape != log_word_probs.shape:
        raise ValueError(f"log_word_probs: expected the shape of counts {tuple(counts.shape)}, got {tuple(log_word_probs.shape)}")
    return -(counts * log_word_probs).sum(dim=-1)


def elbo_terms(model: NeuralTopicModel, counts: torch.Tensor, *, sample: bool | None = None, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(reconstruction NLL (B,), KL (B,)) of `counts` (B, V); their sum is the negative ELBO,
    an upper bound on -log p(d)."""
    out = model(counts, sample=sample, generator=generator)
    return reconstruction_nll(counts, out.log_word_probs), gaussian_kl(out.mu, out.logvar, model.prior_mu, model.prior_logvar)


def elbo_loss(model: NeuralTopicModel, counts: torch.Tensor, kl_weight: float = 1.0) -> torch.Tensor:
    """The training loss: mean over the batch of reconstruction NLL + kl_weight * KL (nats per
    document; kl_weight < 1 during KL warm-up)."""
    recon, kl = elbo_terms(model, counts)
    return (recon + kl_weight * kl).mean()


@torch.no_grad()
def evaluate_elbo(model: NeuralTopicModel, counts: torch.Tensor, *, batch_size: int = 4096, seed: int = 0) -> dict[str, Any]:
    """Per-document negative ELBO of `counts` (D, V) with the model in eval mode and the noise eps
    drawn from a generator seeded with `seed` (so the same model gets the same number).

    Returns {"recon": (D,), "kl": (D,), "total_loss": mean of recon + kl (SageMaker's
    total_loss, nats per document), "perplexity": exp(sum(recon + kl) / sum of words)}.
    """
    if counts.ndim != 2 or counts.shape[0] == 0:
        raise ValueError(f"counts: expected a non-empty (D, V) tensor, got shape {tuple(counts.shape)}")
    was_training = model.training
    model.eval()
    generator = torch.Generator(device=counts.device).manual_seed(seed)
    recons, kls = [], []
    for start in range(0, counts.shape[0], batch_size):
        recon, kl = elbo_terms(model, counts[start : start + batch_size], sample=True, generator=generator)
        recons.append(recon)
        kls.append(kl)
    model.train(was_training)
    recon, kl = torch.cat(recons), torch.cat(kls)
    return {
        "recon": recon,
        "kl": kl,
        "total_loss": float((recon + kl).mean()),
        "perplexity": perplexity(recon + kl, counts.sum(dim=1)),
    }


@torch.no_grad()
def infer_topics(model: NeuralTopicModel, counts: torch.Tensor, batch_size: int = 4096) -> torch.Tensor:
    """(D, V) counts -> (D, K) topic weights softmax(mu): the deterministic answer an endpoint gives."""
    if counts.ndim != 2 or counts.shape[0] == 0:
        raise ValueError(f"counts: expected a non-empty (D, V) tensor, got shape {tuple(counts.shape)}")
    empty = torch.nonzero(counts.sum(dim=1) == 0).flatten()
    if empty.numel():
        raise ValueError(f"counts: document(s) {empty.tolist()[:10]} contain no word of the vocabulary")
    was_training = model.training
    model.eval()
    theta = torch.cat([model(counts[s : s + batch_size], sample=False).theta for s in range(0, counts.shape[0], batch_size)])
    model.train(was_training)
    return theta


def sagemaker_response(topic_weights: torch.Tensor | np.ndarray) -> dict[str, list[dict[str, list[float]]]]:
    """(D, K) topic weights in SageMaker NTM's JSON answer: {"predictions": [{"topic_weights": [...]}, ...]}."""
    weights = topic_weights.detach().cpu().numpy() if isinstance(topic_weights, torch.Tensor) else np.asarray(topic_weights)
    if weights.ndim != 2:
        raise ValueError(f"topic_weights: expected a (D, K) matrix, got shape {weights.shape}")
    return {"predictions": [{"topic_weights": [float(w) for w in row]} for row in weights]}


# --------------------------------------------------------------------------------------------
# Training with SageMaker's knobs
# --------------------------------------------------------------------------------------------


def make_optimizer(name: str, params: Any, learning_rate: float = 0.001, weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """SageMaker NTM's `optimizer` choices as torch optimizers. AdaDelta in its original form
    (Zeiler 2012) has no learning rate: "adadelta" is torch's Adadelta with lr=1.0, and
    `learning_rate` does not apply to it."""
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer: expected one of {OPTIMIZERS}, got {name!r}")
    if not learning_rate > 0:
        raise ValueError(f"learning_rate: expected a positive number, got {learning_rate!r}")
    if not weight_decay >= 0:
        raise ValueError(f"weight_decay: expected a number >= 0, got {weight_decay!r}")
    if name == "adadelta":
        return torch.optim.Adadelta(params, lr=1.0, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=learning_rate, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(params, lr=learning_rate, momentum=0.9, weight_decay=weight_decay)
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=learning_rate, weight_decay=weight_decay)
    return torch.optim.Adagrad(params, lr=learning_rate, weight_decay=weight_decay)


def clip_gradient_values(model: nn.Module, clip_gradient: float) -> list[Any]:
    """SageMaker's `clip_gradient`: clamp every gradient component to [-clip, clip] (per
    component, not the norm). Registers hooks on the parameters; returns their handles (call
    `.remove()` to undo). `math.inf` (SageMaker's default) registers nothing."""
    if not clip_gradient > 0:
        raise ValueError(f"clip_gradient: expected a positive number, got {clip_gradient!r}")
    if math.isinf(clip_gradient):
        return []
    return [p.register_hook(lambda g, c=clip_gradient: g.clamp(-c, c)) for p in model.parameters() if p.requires_grad]


def minibatches(counts: torch.Tensor, mini_batch_size: int, *, sub_sample: float = 1.0, generator: torch.Generator | None = None) -> list[torch.Tensor]:
    """One epoch of shuffled mini-batches of the rows of `counts` (D, V); SageMaker's `sub_sample`
    keeps a random fraction of the documents each epoch (at least one batch)."""
    if isinstance(mini_batch_size, bool) or not isinstance(mini_batch_size, int) or mini_batch_size < 1:
        raise ValueError(f"mini_batch_size: expected an integer >= 1, got {mini_batch_size!r}")
    if not 0 < sub_sample <= 1:
        raise ValueError(f"sub_sample: expected a fraction in (0, 1], got {sub_sample!r}")
    num_docs = counts.shape[0]
    if num_docs == 0:
        raise ValueError("counts: expected at least one document")
    order = torch.randperm(num_docs, generator=generator)
    keep = max(min(mini_batch_size, num_docs), round(sub_sample * num_docs))
    order = order[:keep].to(counts.device)
    return [counts[order[s : s + mini_batch_size]] for s in range(0, keep, mini_batch_size)]


def kl_warmup_weight(epoch: int, warmup_epochs: int) -> float:
    """KL warm-up: the KL term's weight in epoch `epoch` (0-based) rises linearly from
    1/(warmup_epochs+1) to 1 and stays there; 0 warm-up epochs means always 1."""
    if warmup_epochs < 0:
        raise ValueError(f"warmup_epochs: expected an integer >= 0, got {warmup_epochs!r}")
    return min(1.0, (epoch + 1) / (warmup_epochs + 1))


def train_topic_model(
    model: NeuralTopicModel,
    train_counts: torch.Tensor,
    validation_counts: torch.Tensor,
    *,
    epochs: int = 50,
    mini_batch_size: int = 256,
    optimizer: str = "adadelta",
    learning_rate: float = 0.001,
    weight_decay: float = 0.0,
    num_patience_epochs: int = 3,
    tolerance: float = 0.001,
    sub_sample: float = 1.0,
    clip_gradient: float = math.inf,
    kl_warmup_epochs: int = 0,
    seed: int = 0,
    progress: bool = True,
    desc: str = "NTM",
) -> History:
    """Train with helpers.train.fit and SageMaker's knobs; returns the History (per-epoch
    "validation:total_loss" among its metrics). Stops early once the validation total loss has not
    fallen by more than the relative `tolerance` for `num_patience_epochs` epochs, and keeps the
    best weights. Data stays on the device of `train_counts`; the model is moved there."""
    device = train_counts.device
    model.to(device)
    opt = make_optimizer(optimizer, model.parameters(), learning_rate, weight_decay)
    hooks = clip_gradient_values(model, clip_gradient)
    generator = torch.Generator().manual_seed(seed)

    def batches(epoch: int) -> list[tuple[torch.Tensor, float]]:
        weight = kl_warmup_weight(epoch, kl_warmup_epochs)
        return [(b, weight) for b in minibatches(train_counts, mini_batch_size, sub_sample=sub_sample, generator=generator)]

    def loss_fn(m: nn.Module, batch: tuple[torch.Tensor, float]) -> torch.Tensor:
        counts, kl_weight = batch
        return elbo_loss(m, counts, kl_weight)

    def evaluate(m: nn.Module) -> dict[str, float]:
        total = evaluate_elbo(m, validation_counts, seed=seed)["total_loss"]
        # A relative tolerance is an absolute one on the log: value < best * (1 - tol)  <=>
        # log(best) - log(value) > -log(1 - tol).
        return {"validation:total_loss": total, "log_total_loss": math.log(total)}

    try:
        return fit(
            model,
            batches,
            loss_fn,
            opt,
            epochs,
            device=device,
            evaluate=evaluate,
            monitor="log_total_loss",
            mode="min",
            patience=num_patience_epochs,
            tolerance=-math.log1p(-tolerance),
            min_epochs=kl_warmup_epochs + 1,
            progress=progress,
            desc=desc,
        )
    finally:
        for hook in hooks:
            hook.remove()


# --------------------------------------------------------------------------------------------
# Judging topics
# --------------------------------------------------------------------------------------------


def _as_top_words(top_words: Any, argument: str = "top_words") -> np.ndarray:
    top = np.asarray(top_words.detach().cpu() if isinstance(top_words, torch.Tensor) else top_words)
    if top.ndim != 2 or top.size == 0:
        raise ValueError(f"{argument}: expected a non-empty (K, T) array of word indices, got shape {top.shape}")
    if not np.issubdtype(top.dtype, np.integer):
        raise TypeError(f"{argument}: expected integer word indices, got dtype {top.dtype}")
    return top


def top_words(topic_word: torch.Tensor | np.ndarray, n: int = 10) -> np.ndarray:
    """(K, V) topic-word weights -> (K, n) indices of each topic's n heaviest words, heaviest
    first (ties: the lower index first)."""
    weights = np.asarray(topic_word.detach().cpu() if isinstance(topic_word, torch.Tensor) else topic_word, dtype=np.float64)
    if weights.ndim != 2 or weights.size == 0:
        raise ValueError(f"topic_word: expected a non-empty (K, V) matrix, got shape {weights.shape}")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 1 <= n <= weights.shape[1]:
        raise ValueError(f"n: expected an integer in [1, {weights.shape[1]}], got {n!r}")
    if np.isnan(weights).any():
        raise ValueError("topic_word: contains NaN")
    return np.argsort(-weights, axis=1, kind="stable")[:, :n]


def npmi_coherence(top_words: Any, reference: sp.spmatrix | np.ndarray) -> np.ndarray:
    """NPMI coherence of each topic's top words over document co-occurrence in `reference`.

    top_words: (K, T) word indices; reference: (D, V) counts (only presence matters).
    With p(w) = docs containing w / D and p(w, w') = docs containing both / D:
        NPMI(w, w') = log(p(w, w') / (p(w) p(w'))) / -log p(w, w'),
    averaged over the T(T-1)/2 pairs of each topic. Convention for the edges: a pair that never
    co-occurs (p(w, w') = 0, including words absent from the reference) scores -1, the limit of
    NPMI as p(w, w') -> 0; a pair present in every document (p(w, w') = 1) scores 1.
    Returns (K,) in [-1, 1].
    """
    top = _as_top_words(top_words)
    if top.shape[1] < 2:
        raise ValueError("top_words: NPMI needs at least 2 words per topic")
    matrix = sp.csr_matrix(reference) if not sp.issparse(reference) else reference.tocsr()
    if matrix.shape[0] == 0:
        raise ValueError("reference: the reference corpus is empty")
    if top.min() < 0 or top.max() >= matrix.shape[1]:
        raise ValueError(f"top_words: word indices must lie in [0, {matrix.shape[1]}) (the reference's vocabulary)")
    words = np.unique(top)
    present = (matrix[:, words] > 0).astype(np.float64)  # (D, W) binary
    num_docs = matrix.shape[0]
    p_word = np.asarray(present.sum(axis=0)).ravel() / num_docs  # (W,)
    p_joint = np.asarray((present.T @ present).todense()) / num_docs  # (W, W)
    with np.errstate(divide="ignore", invalid="ignore"):
        pmi = np.log(p_joint) - np.log(p_word)[:, None] - np.log(p_word)[None, :]
        npmi = pmi / -np.log(p_joint)
    npmi[p_joint == 0] = -1.0
    npmi[p_joint == 1] = 1.0
    position = np.searchsorted(words, top)  # (K, T) rows/cols into the (W, W) table
    i, j = np.triu_indices(top.shape[1], k=1)
    return npmi[position[:, i], position[:, j]].mean(axis=1)


def topic_diversity(top_words: Any) -> float:
    """Share of unique words among all topics' top words, (K, T) -> float in [1/K, 1]
    (Dieng et al. 2020 use T = 25); 1 means no two topics share a top word."""
    top = _as_top_words(top_words)
    return float(np.unique(top).size / top.size)


def topic_uniqueness(top_words: Any, per_topic: bool = False) -> float | np.ndarray:
    """Topic uniqueness TU (Nan et al. 2019, reported by SageMaker's NTM): with cnt(w) the number
    of topics whose top words include w, TU(k) = mean_{w in top_k} 1 / cnt(w), and TU = mean_k TU(k).

    (K, T) -> float in [1/K, 1], or the (K,) values TU(k) with `per_topic` (low: a duplicated
    topic). Averaged over all topics, TU equals `topic_diversity` of the same top words: each
    distinct word w adds cnt(w) * 1/cnt(w) = 1 to the sum.
    """
    top = _as_top_words(top_words)
    if any(np.unique(row).size != row.size for row in top):
        raise ValueError("top_words: a topic lists the same word twice")
    words, counts = np.unique(top, return_counts=True)
    cnt = counts[np.searchsorted(words, top)]  # (K, T)
    per = (1.0 / cnt).mean(axis=1)
    return per if per_topic else float(per.mean())


class Recovery(NamedTuple):
    """mean_cosine: mean cosine similarity of the matched pairs; learned_index[i] is matched to
    true_index[i]; cosine: (K_learned, K_true) all pairwise cosine similarities."""

    mean_cosine: float
    learned_index: np.ndarray
    true_index: np.ndarray
    cosine: np.ndarray


def topic_recovery(learned: torch.Tensor | np.ndarray, true: torch.Tensor | np.ndarray) -> Recovery:
    """Best one-to-one match of learned topics (K1, V) to true topics (K2, V) by cosine similarity
    (the Hungarian algorithm maximising the total); min(K1, K2) pairs are matched."""
    a = np.asarray(learned.detach().cpu() if isinstance(learned, torch.Tensor) else learned, dtype=np.float64)
    b = np.asarray(true.detach().cpu() if isinstance(true, torch.Tensor) else true, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.size == 0 or b.size == 0:
        raise ValueError(f"learned, true: expected non-empty (K, V) matrices, got shapes {a.shape} and {b.shape}")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"true: expected the vocabulary size of learned ({a.shape[1]}), got {b.shape[1]}; align the vocabularies first (align_topics)")
    if np.isnan(a).any() or np.isnan(b).any():
        raise ValueError("learned, true: contain NaN")
    norm_a, norm_b = np.linalg.norm(a, axis=1, keepdims=True), np.linalg.norm(b, axis=1, keepdims=True)
    if (norm_a == 0).any() or (norm_b == 0).any():
        raise ValueError("learned, true: a topic is all zeros (cosine similarity is undefined)")
    cosine = (a / norm_a) @ (b / norm_b).T
    rows, cols = linear_sum_assignment(cosine, maximize=True)
    return Recovery(float(cosine[rows, cols].mean()), rows, cols, cosine)


def align_topics(topic_word: np.ndarray, vocab_from: Sequence[str], vocab_to: Sequence[str]) -> np.ndarray:
    """Re-index (K, V_from) topic-word weights onto the columns of `vocab_to` (K, V_to); words of
    `vocab_to` missing from `vocab_from` get weight 0."""
    weights = np.asarray(topic_word, dtype=np.float64)
    if weights.ndim != 2 or weights.shape[1] != len(vocab_from):
        raise ValueError(f"topic_word: expected shape (K, {len(vocab_from)}) to match vocab_from, got {weights.shape}")
    index = {word: v for v, word in enumerate(vocab_from)}
    out = np.zeros((weights.shape[0], len(vocab_to)))
    columns = [(t, index[w]) for t, w in enumerate(vocab_to) if w in index]
    if columns:
        to, frm = map(list, zip(*columns))
        out[:, to] = weights[:, frm]
    return out


def perplexity(neg_log_likelihood: torch.Tensor | np.ndarray, doc_lengths: torch.Tensor | np.ndarray) -> float:
    """Corpus perplexity exp(sum_d -log p(d) / sum_d N_d) from per-document negative
    log-likelihoods (or negative ELBOs, giving an upper bound, as scikit-learn's LDA does) and word
    counts N_d, both (D,). A model that is uniform over V words scores exactly V."""
    nll = np.asarray(neg_log_likelihood.detach().cpu() if isinstance(neg_log_likelihood, torch.Tensor) else neg_log_likelihood, dtype=np.float64)
    lengths = np.asarray(doc_lengths.detach().cpu() if isinstance(doc_lengths, torch.Tensor) else doc_lengths, dtype=np.float64)
    if nll.ndim != 1 or nll.shape != lengths.shape or nll.size == 0:
        raise ValueError(f"neg_log_likelihood, doc_lengths: expected two non-empty (D,) arrays, got shapes {nll.shape} and {lengths.shape}")
    if (lengths <= 0).any():
        raise ValueError(f"doc_lengths: document(s) {np.flatnonzero(lengths <= 0).tolist()[:10]} have no words; drop them first")
    if not np.isfinite(nll).all():
        raise ValueError("neg_log_likelihood: contains NaN or infinity")
    return float(np.exp(nll.sum() / lengths.sum()))


def topic_usage(doc_topic: torch.Tensor | np.ndarray) -> np.ndarray:
    """(D, K) topic weights -> (K,) each topic's share of the corpus (mean weight; sums to 1)."""
    theta = np.asarray(doc_topic.detach().cpu() if isinstance(doc_topic, torch.Tensor) else doc_topic, dtype=np.float64)
    if theta.ndim != 2 or theta.shape[0] == 0:
        raise ValueError(f"doc_topic: expected a non-empty (D, K) matrix, got shape {theta.shape}")
    return theta.mean(axis=0)


def collapsed_topics(doc_topic: torch.Tensor | np.ndarray, threshold: float | None = None) -> np.ndarray:
    """Indices of topics the model has stopped using: corpus share below `threshold`
    (default 1 / (10 K), a tenth of a fair share)."""
    usage = topic_usage(doc_topic)
    threshold = 1.0 / (10 * usage.size) if threshold is None else threshold
    if not 0 < threshold < 1:
        raise ValueError(f"threshold: expected a share in (0, 1), got {threshold!r}")
    return np.flatnonzero(usage < threshold)
