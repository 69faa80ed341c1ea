"""helpers.topics: bag of words, the NTM/ProdLDA model and ELBO, and the topic metrics, each
against a reference (a library oracle, a brute-force loop or a hand-computed case)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from sklearn.feature_extraction.text import CountVectorizer
from torch.distributions import Multinomial, Normal, kl_divergence

from helpers import topics as T

SEEDS = [0, 1, 2]


def _random_counts(rng: np.random.Generator, docs: int, vocab: int, rate: float = 0.5) -> np.ndarray:
    counts = rng.poisson(rate, size=(docs, vocab))
    counts[np.arange(docs), rng.integers(0, vocab, size=docs)] += 1  # no empty document
    return counts


# ---- bag of words ----------------------------------------------------------------------------


DOCS = [
    "The rocket reached orbit and the satellite separated.",
    "Orbit, orbit, orbit: the rocket again!",
    "The goalie stopped the puck in overtime 3 times.",
    "and the of to",
]


def test_bag_of_words_matches_countvectorizer_and_drops_stop_words_numbers_and_empty_docs():
    bow = T.bag_of_words(DOCS)
    oracle = CountVectorizer(stop_words="english", token_pattern=T.TOKEN_PATTERN)
    expected = oracle.fit_transform(DOCS)
    assert bow.vocab == oracle.get_feature_names_out().tolist()
    assert "the" not in bow.vocab and "3" not in bow.vocab
    assert bow.kept.tolist() == [0, 1, 2]  # the all-stop-word document is dropped
    np.testing.assert_array_equal(bow.counts.toarray(), expected.toarray()[:3])
    assert bow.counts[1, bow.vocab.index("orbit")] == 3


def test_bag_of_words_keeps_the_feature_dim_most_frequent_words_and_min_words():
    bow = T.bag_of_words(DOCS, feature_dim=2)
    assert bow.vocab == ["orbit", "rocket"]
    bow = T.bag_of_words(DOCS + ["Puck!"], min_words=2)
    assert bow.kept.tolist() == [0, 1, 2]  # the one-word document is dropped too


def test_bag_of_words_min_df_and_fixed_vocabulary():
    bow = T.bag_of_words(DOCS, min_df=2)
    assert bow.vocab == ["orbit", "rocket"]
    bow = T.bag_of_words(DOCS, vocabulary=["puck", "orbit"])
    assert bow.vocab == ["puck", "orbit"]
    assert bow.counts.toarray().tolist() == [[0, 1], [0, 3], [1, 0]]


def test_bag_of_words_rejects_empty_and_wordless_corpora():
    with pytest.raises(ValueError, match="corpus is empty"):
        T.bag_of_words([])
    with pytest.raises(ValueError, match="no words left"):
        T.bag_of_words(["the and of", "to be or not to be"])
    with pytest.raises(TypeError, match="docs"):
        T.bag_of_words("a single string is not a corpus")
    with pytest.raises(ValueError, match="min_words"):
        T.bag_of_words(DOCS, min_words=100)


def test_encode_documents_names_documents_with_no_known_word():
    bow = T.bag_of_words(DOCS)
    counts = T.encode_documents(["orbit puck puck"], bow.vectorizer)
    assert counts[0, bow.vocab.index("puck")] == 2
    with pytest.raises(ValueError, match=r"document\(s\) \[1\] contain no word"):
        T.encode_documents(["orbit", "cooking pasta tonight"], bow.vectorizer)
    with pytest.raises(TypeError, match="fitted"):
        T.encode_documents(["orbit"], CountVectorizer())


# ---- the model -------------------------------------------------------------------------------


def test_encoder_layers_auto_is_three_k_then_two_k():
    assert T.encoder_sizes("auto", 20) == [60, 40]
    assert T.encoder_sizes("100, 50", 20) == [100, 50]
    assert T.encoder_sizes([7], 20) == [7]
    for bad in ("", "ten", "10,0", []):
        with pytest.raises(ValueError, match="encoder_layers"):
            T.encoder_sizes(bad, 20)


def test_model_builds_sagemakers_encoder_with_its_knobs():
    model = T.NeuralTopicModel(100, 10, encoder_layers_activation="tanh", batch_norm=True)
    linears = [m for m in model.encoder if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(100, 30), (30, 20)]
    assert sum(isinstance(m, torch.nn.BatchNorm1d) for m in model.encoder) == 2
    assert sum(isinstance(m, torch.nn.Tanh) for m in model.encoder) == 2
    assert model.decoder.weight.shape == (100, 10)  # W, the topic-word matrix
    assert model.decoder.bias is not None
    assert T.NeuralTopicModel(100, 10, variant="prodlda").decoder.bias is None


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"feature_dim": 10, "num_topics": 11}, "num_topics: 11 topics cannot"),
        ({"feature_dim": 10, "num_topics": 1}, "num_topics"),
        ({"feature_dim": 1, "num_topics": 2}, "feature_dim"),
        ({"feature_dim": 10, "num_topics": 2, "encoder_layers_activation": "gelu"}, "encoder_layers_activation"),
        ({"feature_dim": 10, "num_topics": 2, "variant": "lda"}, "variant"),
        ({"feature_dim": 10, "num_topics": 2, "topic_dropout": 1.0}, "topic_dropout"),
    ],
)
def test_model_rejects_bad_configuration(kwargs, message):
    with pytest.raises(ValueError, match=message):
        T.NeuralTopicModel(**kwargs)


@pytest.mark.parametrize("variant", T.VARIANTS)
@pytest.mark.parametrize("seed", SEEDS)
def test_forward_gives_normalised_word_and_topic_distributions(variant, seed):
    torch.manual_seed(seed)
    model = T.NeuralTopicModel(30, 4, variant=variant)
    counts = torch.as_tensor(_random_counts(np.random.default_rng(seed), 8, 30), dtype=torch.float32)
    out = model(counts)
    assert out.log_word_probs.shape == (8, 30) and out.theta.shape == (8, 4)
    torch.testing.assert_close(out.log_word_probs.exp().sum(-1), torch.ones(8))
    torch.testing.assert_close(out.theta.sum(-1), torch.ones(8))
    torch.testing.assert_close(model.topic_word().sum(-1), torch.ones(4))
    with pytest.raises(ValueError, match="counts: expected shape"):
        model(counts[:, :10])


def test_eval_mode_uses_the_posterior_mean_and_training_mode_samples():
    torch.manual_seed(0)
    model = T.NeuralTopicModel(20, 3)
    counts = torch.ones(2, 20)
    model.eval()
    a, b = model(counts), model(counts)
    torch.testing.assert_close(a.theta, b.theta)
    torch.testing.assert_close(a.theta, torch.softmax(a.mu, -1))
    model.train()
    assert not torch.allclose(model(counts).theta, model(counts).theta)


def test_reparameterization_passes_gradients_to_the_encoder():
    torch.manual_seed(0)
    model = T.NeuralTopicModel(20, 3)
    T.elbo_loss(model, torch.ones(4, 20)).backward()
    assert model.logvar.weight.grad is not None and model.logvar.weight.grad.abs().sum() > 0
    assert model.mu.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("seed", SEEDS)
def test_gaussian_kl_matches_torch_distributions(seed):
    gen = torch.Generator().manual_seed(seed)
    mu, logvar = torch.randn(5, 7, generator=gen), torch.randn(5, 7, generator=gen)
    prior_mu, prior_logvar = torch.randn(7, generator=gen), torch.randn(7, generator=gen)
    expected = kl_divergence(Normal(mu, (0.5 * logvar).exp()), Normal(prior_mu, (0.5 * prior_logvar).exp())).sum(-1)
    torch.testing.assert_close(T.gaussian_kl(mu, logvar, prior_mu, prior_logvar), expected)
    standard = kl_divergence(Normal(mu, (0.5 * logvar).exp()), Normal(0.0, 1.0)).sum(-1)
    torch.testing.assert_close(T.gaussian_kl(mu, logvar), standard)
    assert torch.all(T.gaussian_kl(prior_mu.expand(3, 7), prior_logvar.expand(3, 7), prior_mu, prior_logvar).abs() < 1e-5)


@pytest.mark.parametrize("seed", SEEDS)
def test_reconstruction_nll_is_the_multinomial_log_likelihood_without_its_coefficient(seed):
    rng = np.random.default_rng(seed)
    counts = torch.as_tensor(_random_counts(rng, 4, 9), dtype=torch.float32)
    logits = torch.as_tensor(rng.normal(size=(4, 9)), dtype=torch.float32)
    log_probs = torch.log_softmax(logits, -1)
    log_coefficient = torch.lgamma(counts.sum(-1) + 1) - torch.lgamma(counts + 1).sum(-1)
    expected = -(torch.stack([Multinomial(int(c.sum()), logits=l).log_prob(c) for c, l in zip(counts, logits)]) - log_coefficient)
    torch.testing.assert_close(T.reconstruction_nll(counts, log_probs), expected)
    with pytest.raises(ValueError, match="log_word_probs"):
        T.reconstruction_nll(counts, log_probs[:, :3])


def test_dirichlet_laplace_prior_matches_the_closed_form():
    for k, alpha in [(2, 1.0), (20, 0.1), (50, 1.0)]:
        mean, logvar = T.dirichlet_laplace_prior(k, alpha)
        torch.testing.assert_close(mean, torch.zeros(k))
        torch.testing.assert_close(logvar.exp(), torch.full((k,), (1 - 1 / k) / alpha))  # symmetric case
    with pytest.raises(ValueError, match="alpha"):
        T.dirichlet_laplace_prior(5, 0.0)


def test_prodlda_uses_the_laplace_prior_and_nvdm_the_standard_normal():
    prodlda = T.NeuralTopicModel(30, 5, variant="prodlda", prior_alpha=0.5)
    torch.testing.assert_close(prodlda.prior_logvar.exp(), torch.full((5,), 0.8 / 0.5))
    nvdm = T.NeuralTopicModel(30, 5)
    assert torch.all(nvdm.prior_mu == 0) and torch.all(nvdm.prior_logvar == 0)


def test_elbo_loss_is_the_batch_mean_of_reconstruction_plus_weighted_kl():
    torch.manual_seed(0)
    model = T.NeuralTopicModel(15, 3)
    counts = torch.as_tensor(_random_counts(np.random.default_rng(0), 6, 15), dtype=torch.float32)
    torch.manual_seed(1)
    loss = T.elbo_loss(model, counts, kl_weight=0.3)
    torch.manual_seed(1)
    recon, kl = T.elbo_terms(model, counts)
    torch.testing.assert_close(loss, (recon + 0.3 * kl).mean())
    assert torch.all(kl >= 0)


def test_evaluate_elbo_is_reproducible_and_consistent_with_perplexity():
    torch.manual_seed(0)
    model = T.NeuralTopicModel(15, 3)
    counts = torch.as_tensor(_random_counts(np.random.default_rng(0), 10, 15), dtype=torch.float32)
    a, b = T.evaluate_elbo(model, counts, batch_size=3), T.evaluate_elbo(model, counts, batch_size=3)
    assert a["total_loss"] == b["total_loss"]
    assert a["total_loss"] == pytest.approx(float((a["recon"] + a["kl"]).mean()))
    assert a["perplexity"] == pytest.approx(math.exp(float((a["recon"] + a["kl"]).sum() / counts.sum())))
    assert model.training  # restored


def test_infer_topics_and_the_sagemaker_response_shape():
    torch.manual_seed(0)
    model = T.NeuralTopicModel(15, 3)
    counts = torch.ones(2, 15)
    theta = T.infer_topics(model, counts)
    torch.testing.assert_close(theta.sum(-1), torch.ones(2))
    response = T.sagemaker_response(theta)
    assert list(response) == ["predictions"] and len(response["predictions"]) == 2
    assert len(response["predictions"][0]["topic_weights"]) == 3
    assert all(isinstance(w, float) for w in response["predictions"][1]["topic_weights"])
    with pytest.raises(ValueError, match=r"document\(s\) \[1\]"):
        T.infer_topics(model, torch.stack([torch.ones(15), torch.zeros(15)]))


# ---- training knobs --------------------------------------------------------------------------


def test_make_optimizer_maps_sagemakers_names():
    params = [torch.nn.Parameter(torch.zeros(2))]
    assert isinstance(T.make_optimizer("adam", params, 0.01), torch.optim.Adam)
    adadelta = T.make_optimizer("adadelta", params, 0.01)
    assert adadelta.param_groups[0]["lr"] == 1.0  # AdaDelta (Zeiler 2012) has no learning rate
    assert T.make_optimizer("sgd", params, 0.1, weight_decay=0.01).param_groups[0]["weight_decay"] == 0.01
    for name in ("rmsprop", "adagrad"):
        assert T.make_optimizer(name, params).param_groups[0]["lr"] == 0.001
    with pytest.raises(ValueError, match="optimizer"):
        T.make_optimizer("lbfgs", params)


def test_clip_gradient_clamps_each_component_not_the_norm():
    w = torch.nn.Parameter(torch.zeros(3))
    module = torch.nn.Module()
    module.w = w
    handles = T.clip_gradient_values(module, 0.5)
    (w * torch.tensor([2.0, -3.0, 0.1])).sum().backward()
    torch.testing.assert_close(w.grad, torch.tensor([0.5, -0.5, 0.1]))
    for h in handles:
        h.remove()
    assert T.clip_gradient_values(module, math.inf) == []
    with pytest.raises(ValueError, match="clip_gradient"):
        T.clip_gradient_values(module, 0.0)


def test_minibatches_cover_the_corpus_once_or_a_sub_sample():
    counts = torch.arange(10, dtype=torch.float32)[:, None].repeat(1, 3)
    gen = torch.Generator().manual_seed(0)
    batches = T.minibatches(counts, 4, generator=gen)
    assert [len(b) for b in batches] == [4, 4, 2]
    assert sorted(torch.cat(batches)[:, 0].tolist()) == list(range(10))
    half = T.minibatches(counts, 4, sub_sample=0.5, generator=gen)
    assert sum(len(b) for b in half) == 5
    assert sum(len(b) for b in T.minibatches(counts, 4, sub_sample=0.01, generator=gen)) == 4  # at least one batch
    with pytest.raises(ValueError, match="sub_sample"):
        T.minibatches(counts, 4, sub_sample=0.0)


def test_kl_warmup_rises_linearly_to_one():
    assert [T.kl_warmup_weight(e, 3) for e in range(5)] == [0.25, 0.5, 0.75, 1.0, 1.0]
    assert T.kl_warmup_weight(0, 0) == 1.0


def _tiny_corpus(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    topic_word = np.zeros((2, 10))
    topic_word[0, :5], topic_word[1, 5:] = 0.2, 0.2
    theta = rng.dirichlet([0.2, 0.2], size=300)
    counts = np.stack([rng.multinomial(30, t @ topic_word) for t in theta])
    x = torch.as_tensor(counts, dtype=torch.float32)
    return x[:240], x[240:]


def test_training_lowers_the_validation_loss_and_recovers_two_obvious_topics():
    train, valid = _tiny_corpus()
    torch.manual_seed(0)
    model = T.NeuralTopicModel(10, 2)
    before = T.evaluate_elbo(model, valid)["total_loss"]
    history = T.train_topic_model(model, train, valid, epochs=30, mini_batch_size=32, optimizer="adam", learning_rate=0.02, progress=False)
    assert history.metric("validation:total_loss")[history.best_epoch] < before
    truth = np.zeros((2, 10))
    truth[0, :5], truth[1, 5:] = 0.2, 0.2
    assert T.topic_recovery(model.topic_word(), truth).mean_cosine > 0.9


def test_early_stopping_uses_a_relative_tolerance():
    train, valid = _tiny_corpus()
    torch.manual_seed(0)
    # No epoch can improve the loss by 90%: training stops after 1 + num_patience_epochs epochs.
    history = T.train_topic_model(T.NeuralTopicModel(10, 2), train, valid, epochs=20, optimizer="adam", learning_rate=0.01, num_patience_epochs=2, tolerance=0.9, progress=False)
    assert history.stopped_early and history.epochs_run == 3


# ---- metrics ---------------------------------------------------------------------------------


def test_top_words_are_heaviest_first_with_ties_to_the_lower_index():
    weights = np.array([[0.1, 0.5, 0.5, 0.2], [0.4, 0.3, 0.2, 0.1]])
    assert T.top_words(weights, 3).tolist() == [[1, 2, 3], [0, 1, 2]]
    assert T.top_words(torch.tensor(weights), 1).tolist() == [[1], [0]]
    with pytest.raises(ValueError, match="n: expected"):
        T.top_words(weights, 5)
    with pytest.raises(ValueError, match="NaN"):
        T.top_words(np.array([[np.nan, 1.0]]), 1)


def _npmi_brute_force(top: np.ndarray, reference: np.ndarray) -> np.ndarray:
    present = reference > 0
    num_docs = len(reference)
    scores = []
    for words in top:
        pairs = []
        for a in range(len(words)):
            for b in range(a + 1, len(words)):
                i, j = words[a], words[b]
                p_i, p_j = present[:, i].sum() / num_docs, present[:, j].sum() / num_docs
                p_ij = (present[:, i] & present[:, j]).sum() / num_docs
                if p_ij == 0:
                    pairs.append(-1.0)
                elif p_ij == 1:
                    pairs.append(1.0)
                else:
                    pairs.append(math.log(p_ij / (p_i * p_j)) / -math.log(p_ij))
        scores.append(sum(pairs) / len(pairs))
    return np.array(scores)


@pytest.mark.parametrize("seed", SEEDS)
def test_npmi_matches_a_brute_force_double_loop(seed):
    rng = np.random.default_rng(seed)
    reference = rng.poisson(0.4, size=(25, 12))
    reference[:, 11] = 0  # a word that never occurs: all its pairs never co-occur
    top = np.stack([rng.permutation(12)[:5] for _ in range(4)])
    top[0, 0] = 11
    np.testing.assert_allclose(T.npmi_coherence(top, reference), _npmi_brute_force(top, reference))
    np.testing.assert_allclose(T.npmi_coherence(top, sp.csr_matrix(reference)), _npmi_brute_force(top, reference))


def test_npmi_hand_computed_cases_and_its_edge_conventions():
    # Documents: {a, b}, {a, b}, {c}, {a, b, c}.
    reference = np.array([[1, 1, 0], [2, 1, 0], [0, 0, 1], [1, 1, 1]])
    p_ab, p_ac = 3 / 4, 1 / 4
    expected_ab = math.log(p_ab / (3 / 4 * 3 / 4)) / -math.log(p_ab)
    expected_ac = math.log(p_ac / (3 / 4 * 2 / 4)) / -math.log(p_ac)
    np.testing.assert_allclose(T.npmi_coherence([[0, 1], [0, 2]], reference), [expected_ab, expected_ac])
    never = np.array([[1, 0], [0, 1]])
    assert T.npmi_coherence([[0, 1]], never).tolist() == [-1.0]  # never co-occur: -1
    always = np.array([[1, 1], [3, 2]])
    assert T.npmi_coherence([[0, 1]], always).tolist() == [1.0]  # co-occur in every document: 1


def test_npmi_rejects_bad_input():
    reference = np.ones((3, 4))
    with pytest.raises(ValueError, match="at least 2 words"):
        T.npmi_coherence([[0], [1]], reference)
    with pytest.raises(ValueError, match="word indices"):
        T.npmi_coherence([[0, 4]], reference)
    with pytest.raises(ValueError, match="reference corpus is empty"):
        T.npmi_coherence([[0, 1]], np.ones((0, 4)))
    with pytest.raises(TypeError, match="integer"):
        T.npmi_coherence([[0.0, 1.0]], reference)


def test_topic_diversity_counts_unique_top_words():
    assert T.topic_diversity([[0, 1, 2], [3, 4, 5]]) == 1.0
    assert T.topic_diversity([[0, 1, 2], [0, 1, 2]]) == 0.5
    assert T.topic_diversity([[0, 1], [1, 2]]) == 0.75
    with pytest.raises(ValueError, match="top_words"):
        T.topic_diversity(np.zeros((0, 3), dtype=int))


def test_topic_uniqueness_hand_computed():
    # Word 1 is shared by both topics: TU = ((1 + 1/2) / 2 + (1/2 + 1) / 2) / 2 = 0.75.
    assert T.topic_uniqueness([[0, 1], [1, 2]]) == pytest.approx(0.75)
    assert T.topic_uniqueness([[0, 1], [2, 3]]) == 1.0
    assert T.topic_uniqueness([[0, 1], [0, 1], [0, 1]]) == pytest.approx(1 / 3)
    np.testing.assert_allclose(T.topic_uniqueness([[0, 1], [1, 2], [3, 4]], per_topic=True), [0.75, 0.75, 1.0])
    with pytest.raises(ValueError, match="same word twice"):
        T.topic_uniqueness([[0, 0], [1, 2]])


@pytest.mark.parametrize("seed", SEEDS)
def test_mean_topic_uniqueness_equals_topic_diversity(seed):
    rng = np.random.default_rng(seed)
    top = np.stack([rng.choice(15, size=5, replace=False) for _ in range(6)])  # overlapping topics
    assert T.topic_uniqueness(top) == pytest.approx(T.topic_diversity(top))
    assert T.topic_uniqueness(top, per_topic=True).shape == (6,)


@pytest.mark.parametrize("seed", SEEDS)
def test_recovery_of_identical_topics_is_one_under_any_permutation(seed):
    rng = np.random.default_rng(seed)
    true = rng.dirichlet(np.ones(30), size=6)
    perm = rng.permutation(6)
    rec = T.topic_recovery(true[perm], true)
    assert rec.mean_cosine == pytest.approx(1.0)
    assert np.array_equal(perm[rec.learned_index], rec.true_index)
    assert T.topic_recovery(torch.tensor(true[perm] * 3.0), true).mean_cosine == pytest.approx(1.0)  # scale-free


@pytest.mark.parametrize("seed", SEEDS)
def test_recovery_matches_a_brute_force_search_over_assignments(seed):
    rng = np.random.default_rng(seed)
    learned, true = rng.random((5, 8)), rng.random((5, 8))
    cos = (learned / np.linalg.norm(learned, axis=1, keepdims=True)) @ (true / np.linalg.norm(true, axis=1, keepdims=True)).T
    best = max(np.mean([cos[i, p[i]] for i in range(5)]) for p in itertools.permutations(range(5)))
    assert T.topic_recovery(learned, true).mean_cosine == pytest.approx(best)


def test_recovery_with_more_learned_than_true_topics_matches_each_true_topic_once():
    true = np.eye(3, 5)
    learned = np.vstack([np.eye(3, 5), np.full((2, 5), 0.2)])
    rec = T.topic_recovery(learned, true)
    assert rec.mean_cosine == pytest.approx(1.0) and len(rec.true_index) == 3


def test_recovery_rejects_mismatched_or_degenerate_topics():
    with pytest.raises(ValueError, match="align the vocabularies"):
        T.topic_recovery(np.ones((2, 3)), np.ones((2, 4)))
    with pytest.raises(ValueError, match="all zeros"):
        T.topic_recovery(np.zeros((2, 3)), np.ones((2, 3)))
    with pytest.raises(ValueError, match="NaN"):
        T.topic_recovery(np.full((2, 3), np.nan), np.ones((2, 3)))


def test_align_topics_reorders_columns_and_zero_fills_missing_words():
    weights = np.array([[0.7, 0.2, 0.1]])
    aligned = T.align_topics(weights, ["a", "b", "c"], ["c", "x", "a"])
    np.testing.assert_allclose(aligned, [[0.1, 0.0, 0.7]])
    with pytest.raises(ValueError, match="vocab_from"):
        T.align_topics(weights, ["a", "b"], ["a"])


@pytest.mark.parametrize("seed", SEEDS)
def test_perplexity_of_a_uniform_model_is_the_vocabulary_size(seed):
    rng = np.random.default_rng(seed)
    vocab = int(rng.integers(5, 500))
    lengths = rng.integers(1, 100, size=20)
    nll = lengths * math.log(vocab)  # every word has probability 1 / V
    assert T.perplexity(nll, lengths) == pytest.approx(vocab)
    counts = torch.as_tensor(_random_counts(rng, 4, vocab), dtype=torch.float32)
    uniform = torch.full((4, vocab), -math.log(vocab))
    assert T.perplexity(T.reconstruction_nll(counts, uniform), counts.sum(-1)) == pytest.approx(vocab, rel=1e-5)


def test_perplexity_rejects_empty_documents_and_bad_shapes():
    with pytest.raises(ValueError, match=r"document\(s\) \[1\] have no words"):
        T.perplexity(np.array([1.0, 0.0]), np.array([3, 0]))
    with pytest.raises(ValueError, match="non-empty"):
        T.perplexity(np.array([]), np.array([]))
    with pytest.raises(ValueError, match="NaN"):
        T.perplexity(np.array([np.nan]), np.array([2]))


def test_collapsed_topics_are_the_ones_with_almost_no_share():
    theta = np.array([[0.7, 0.295, 0.005], [0.5, 0.499, 0.001]])
    np.testing.assert_allclose(T.topic_usage(theta), [0.6, 0.397, 0.003])
    assert T.collapsed_topics(theta).tolist() == [2]
    assert T.collapsed_topics(theta, threshold=0.5).tolist() == [1, 2]
    with pytest.raises(ValueError, match="threshold"):
        T.collapsed_topics(theta, threshold=2.0)
