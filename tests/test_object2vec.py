"""helpers.object2vec: encoders, comparator, MLP head, negative sampling, inference, retrieval,
training and the rating baselines, each against a reference (hand-built tensors, brute-force loops,
torch/scipy oracles)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy import sparse
from scipy.sparse.linalg import lsqr

from helpers import object2vec as o2v

SEEDS = [0, 1, 2]
NETWORKS = list(o2v.ENCODER_NETWORKS)


@pytest.fixture(autouse=True)
def one_thread():
    """These models are tiny: one thread avoids paying for thread hand-offs on every small op."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def random_tokens(generator: torch.Generator, n: int, max_len: int, vocab: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, max_len) right-padded ids in 1..vocab-1 and their lengths (n,)."""
    lengths = torch.randint(1, max_len + 1, (n,), generator=generator)
    tokens = torch.randint(1, vocab, (n, max_len), generator=generator)
    tokens[torch.arange(max_len)[None, :] >= lengths[:, None]] = 0
    return tokens, lengths


def small_model(network: str = "pooled_embedding", **kwargs) -> o2v.Object2Vec:
    args = dict(enc0_vocab_size=30, enc0_max_seq_len=12, enc0_network=network, enc0_token_embedding_dim=6, enc_dim=8, mlp_layers=1, mlp_dim=10, mlp_activation="relu")
    args.update(kwargs)
    return o2v.Object2Vec(**args)


# ---------------------------------------------------------------------------------- tokens
def test_pad_sequences_right_pads_with_zero_and_truncates_to_max_seq_len():
    out = o2v.pad_sequences([[5, 6, 7], [8], [1, 2, 3, 4, 5]], max_seq_len=4)
    assert out.dtype == torch.long
    assert out.tolist() == [[5, 6, 7, 0], [8, 0, 0, 0], [1, 2, 3, 4]]


@pytest.mark.parametrize("bad, message", [([[1], []], "empty sequence"), ([[1, "a"]], "integer token ids"), ([], "at least one"), ("abc", "list of token-id lists")])
def test_pad_sequences_rejects_bad_input(bad, message):
    with pytest.raises((ValueError, TypeError), match=message):
        o2v.pad_sequences(bad, max_seq_len=4)


def test_vocabulary_contract_error_names_encoder_id_and_size():
    tokens = torch.tensor([[3, 4], [1700, 0]])
    with pytest.raises(ValueError) as err:
        o2v.check_tokens(tokens, vocab_size=1683, encoder="enc1")
    message = str(err.value)
    assert "enc1" in message and "1700" in message and "1683" in message


def test_vocabulary_contract_rejects_negative_ids_and_the_model_reports_the_encoder():
    model = small_model()
    with pytest.raises(ValueError, match="enc0: token id -1"):
        model(torch.tensor([[-1]]), torch.tensor([[2]]))
    with pytest.raises(ValueError, match="enc1: token id 30 .*enc1_vocab_size=30"):
        model(torch.tensor([[1]]), torch.tensor([[30]]))


@pytest.mark.parametrize(
    "tokens, message",
    [
        (torch.tensor([1, 2, 3]), "(batch, length)"),
        (torch.tensor([[1.0, 2.0]]), "integer token ids"),
        (torch.tensor([[0, 2]]), "starts with padding"),
        (torch.tensor([[1, 0, 2]]), "padding .* before a real token"),
        (torch.ones(2, 13, dtype=torch.long), "exceed enc0_max_seq_len=12"),
        (torch.zeros(0, 3, dtype=torch.long), "non-empty"),
    ],
)
def test_check_tokens_rejects_wrong_shapes_dtypes_and_padding(tokens, message):
    with pytest.raises((ValueError, TypeError), match=message):
        o2v.check_tokens(tokens, vocab_size=30, max_seq_len=12)


# ---------------------------------------------------------------------------------- encoders
@pytest.mark.parametrize("network", NETWORKS)
@pytest.mark.parametrize("seed", SEEDS)
def test_encoder_output_shape_and_padding_never_changes_the_encoding(network, seed):
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    encoder = o2v.make_encoder(network, vocab_size=25, token_embedding_dim=5, enc_dim=7, max_seq_len=20, layers=2)
    encoder.eval()
    tokens, lengths = random_tokens(gen, 9, 6, 25)
    padded_more = torch.cat([tokens, torch.zeros(9, 7, dtype=torch.long)], dim=1)  # (9, 13) extra padding
    with torch.no_grad():
        out = encoder(tokens)
        out_more = encoder(padded_more)
        alone = torch.cat([encoder(tokens[i : i + 1, : int(lengths[i])]) for i in range(9)])  # no padding at all
    assert out.shape == (9, 7)
    torch.testing.assert_close(out_more, out, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(alone, out, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("seed", SEEDS)
def test_pooled_encoder_is_the_mean_of_the_real_token_embeddings(seed):
    gen = torch.Generator().manual_seed(seed)
    encoder = o2v.make_encoder("pooled_embedding", vocab_size=25, token_embedding_dim=6, enc_dim=6, max_seq_len=8)
    tokens, lengths = random_tokens(gen, 5, 8, 25)
    table = encoder.embedding.weight.detach()
    expected = torch.stack([table[tokens[i, : int(lengths[i])]].mean(dim=0) for i in range(5)])
    torch.testing.assert_close(encoder(tokens).detach(), expected)


def test_bilstm_encoder_matches_a_plain_lstm_run_on_each_unpadded_sequence():
    gen = torch.Generator().manual_seed(3)
    encoder = o2v.make_encoder("bilstm", vocab_size=20, token_embedding_dim=4, enc_dim=5, max_seq_len=9, layers=2).eval()
    tokens, lengths = random_tokens(gen, 4, 9, 20)
    expected = []
    with torch.no_grad():
        for i in range(4):
            emb = encoder.embedding(tokens[i : i + 1, : int(lengths[i])])
            _, (hidden, _) = encoder.lstm(emb)
            expected.append(encoder.project(torch.cat([hidden[-2], hidden[-1]], dim=1)))
        torch.testing.assert_close(encoder(tokens), torch.cat(expected), atol=1e-6, rtol=1e-5)


def test_token_input_is_a_sequence_of_length_one():
    encoder = o2v.make_encoder("pooled_embedding", vocab_size=10, token_embedding_dim=4, enc_dim=4, max_seq_len=1)
    ids = torch.tensor([[3], [7]])
    torch.testing.assert_close(encoder(ids).detach(), encoder.embedding.weight.detach()[[3, 7]])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(network="transformer"), "enc0_network"),
        (dict(layers=5), "enc0_layers"),
        (dict(vocab_size=1), "enc0_vocab_size"),
        (dict(embedding=torch.nn.Embedding(11, 4)), "shared token embedding"),
    ],
)
def test_make_encoder_rejects_bad_hyperparameters(kwargs, message):
    args = dict(network="hcnn", vocab_size=10, token_embedding_dim=4, enc_dim=4, max_seq_len=5)
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        o2v.make_encoder(**args)


# ---------------------------------------------------------------------------------- comparator and MLP
def test_comparator_concatenates_in_the_order_given():
    u = torch.tensor([[1.0, -2.0], [3.0, 0.5]])
    v = torch.tensor([[4.0, 1.0], [-1.0, 2.0]])
    hadamard = torch.tensor([[4.0, -2.0], [-3.0, 1.0]])
    abs_diff = torch.tensor([[3.0, 3.0], [4.0, 1.5]])
    expected_default = torch.cat([hadamard, u, v, abs_diff], dim=1)
    torch.testing.assert_close(o2v.compare(u, v), expected_default)
    torch.testing.assert_close(o2v.compare(u, v, "abs_diff,hadamard"), torch.cat([abs_diff, hadamard], dim=1))
    torch.testing.assert_close(o2v.compare(u, v, ["concat"]), torch.cat([u, v], dim=1))
    assert o2v.comparator_dim("hadamard, concat, abs_diff", 2) == expected_default.shape[1] == 8


@pytest.mark.parametrize("bad", ["hadamard, dot", "", "concat, concat"])
def test_comparator_list_rejects_unknown_empty_and_repeated_operators(bad):
    with pytest.raises(ValueError, match="comparator_list"):
        o2v.parse_comparator_list(bad)


def test_comparator_rejects_encodings_of_different_shapes():
    with pytest.raises(ValueError, match="same shape"):
        o2v.compare(torch.zeros(2, 3), torch.zeros(2, 4))


def test_mlp_has_the_requested_layers_and_linear_activation_is_a_linear_map():
    mlp = o2v.make_mlp(8, mlp_layers=2, mlp_dim=5, mlp_activation="linear", dropout=0.0, out_dim=3)
    linears = [m for m in mlp if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(8, 5), (5, 5), (5, 3)]
    x, y = torch.randn(4, 8), torch.randn(4, 8)
    with torch.no_grad():  # linear up to the bias: f(x + y) = f(x) + f(y) - f(0)
        torch.testing.assert_close(mlp(x + y), mlp(x) + mlp(y) - mlp(torch.zeros(1, 8)), atol=1e-5, rtol=1e-5)
    assert len([m for m in o2v.make_mlp(8, 0, 5, "relu", 0.0, 1) if isinstance(m, torch.nn.Linear)]) == 1
    with pytest.raises(ValueError, match="mlp_activation"):
        o2v.make_mlp(8, 1, 5, "gelu", 0.0, 1)
    with pytest.raises(ValueError, match="mlp_layers"):
        o2v.make_mlp(8, 11, 5, "relu", 0.0, 1)


# ---------------------------------------------------------------------------------- model
def test_model_outputs_logits_for_softmax_and_one_rating_for_regression():
    gen = torch.Generator().manual_seed(0)
    a, _ = random_tokens(gen, 6, 5, 30)
    b, _ = random_tokens(gen, 6, 7, 30)
    assert small_model(num_classes=3)(a, b).shape == (6, 3)
    assert small_model(output_layer="mean_squared_error")(a, b).shape == (6,)
    with pytest.raises(ValueError, match="same batch size"):
        small_model()(a, b[:5])
    with pytest.raises(ValueError, match="output_layer"):
        small_model(output_layer="hinge")


def test_enc1_network_enc0_copies_the_architecture_not_the_weights():
    model = small_model("bilstm", enc1_vocab_size=40)
    assert isinstance(model.enc1, o2v.BiLSTMEncoder)
    assert model.enc1.embedding.num_embeddings == 40
    assert model.enc0.lstm.hidden_size == model.enc1.lstm.hidden_size
    assert model.enc0.lstm.weight_ih_l0.data_ptr() != model.enc1.lstm.weight_ih_l0.data_ptr()


def test_tied_token_embedding_weight_shares_one_table_and_needs_equal_vocabularies():
    model = small_model("hcnn", enc1_network="bilstm", enc1_token_embedding_dim=6, tied_token_embedding_weight=True)
    assert model.enc0.embedding.weight is model.enc1.embedding.weight
    assert not small_model().enc0.embedding.weight is small_model().enc1.embedding.weight
    with pytest.raises(ValueError, match="tied_token_embedding_weight"):
        small_model(enc1_vocab_size=31, tied_token_embedding_weight=True)


@pytest.mark.parametrize("network", NETWORKS)
def test_the_same_seed_gives_the_same_model_and_the_same_training(network):
    gen = torch.Generator().manual_seed(5)
    a, _ = random_tokens(gen, 40, 6, 30)
    b, _ = random_tokens(gen, 40, 6, 30)
    y = torch.randint(0, 2, (40,), generator=gen)

    def trained(seed: int) -> dict[str, torch.Tensor]:
        torch.manual_seed(seed)
        model = small_model(network)
        o2v.fit_object2vec(model, (a, b, y), (a[:10], b[:10], y[:10]), epochs=2, mini_batch_size=8, learning_rate=0.01, seed=seed, progress=False)
        return model.state_dict()

    first, second, other = trained(7), trained(7), trained(8)
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert any(not torch.equal(first[k], other[k]) for k in first)


# ---------------------------------------------------------------------------------- negative sampling
@pytest.mark.parametrize("seed", SEEDS)
def test_negative_samples_are_never_a_positive_pair(seed):
    gen = torch.Generator().manual_seed(seed)
    # Few distinct users and items, so random pairings often collide with positives.
    in0 = torch.randint(1, 11, (120, 1), generator=gen)
    in1 = torch.randint(1, 16, (120, 1), generator=gen)
    neg0, neg1 = o2v.negative_sampling(in0, in1, 3, gen)
    assert neg0.shape == (360, 1) and neg1.shape == (360, 1)
    positives = {(int(a), int(b)) for a, b in zip(in0[:, 0], in1[:, 0])}
    assert all((int(a), int(b)) not in positives for a, b in zip(neg0[:, 0], neg1[:, 0]))
    # the rate negatives of pair i come together and keep in0[i]
    torch.testing.assert_close(neg0, in0.repeat_interleave(3, dim=0))


def test_negative_sampling_compares_sequences_by_content():
    in0 = torch.tensor([[1, 2, 0], [1, 2, 0], [3, 0, 0], [3, 0, 0]])
    in1 = torch.tensor([[4, 0], [5, 0], [4, 0], [6, 0]])
    neg0, neg1 = o2v.negative_sampling(in0, in1, 3, torch.Generator().manual_seed(0))
    # (1 2) is already paired with 4 and 5, so only 6 is a negative for it; (3) only has 5 left.
    assert neg1[:6].tolist() == [[6, 0]] * 6
    assert neg1[6:].tolist() == [[5, 0]] * 6


def test_negative_sampling_edge_cases():
    one = torch.tensor([[1]])
    with pytest.raises(ValueError, match="no negative sample exists"):
        o2v.negative_sampling(one, one, 1)
    everything = torch.tensor([[1], [1], [2], [2]]), torch.tensor([[1], [2], [1], [2]])
    with pytest.raises(ValueError, match="every pairing"):
        o2v.negative_sampling(*everything, 2)
    neg0, neg1 = o2v.negative_sampling(torch.tensor([[1], [2]]), torch.tensor([[3], [4]]), 0)
    assert neg0.shape == (0, 1) and neg1.shape == (0, 1)
    with pytest.raises(ValueError, match="negative_sampling_rate"):
        o2v.negative_sampling(one, one, -1)


def test_pair_batches_with_negative_sampling_add_label_zero_pairs():
    in0 = torch.arange(1, 11)[:, None]
    in1 = torch.arange(11, 21)[:, None]
    batches = o2v.pair_batches(in0, in1, torch.ones(10, dtype=torch.long), 7, torch.Generator().manual_seed(0), negative_sampling_rate=2)
    labels = torch.cat([y for _, _, y in batches(0)])
    assert labels.shape == (30,) and int(labels.sum()) == 10


# ---------------------------------------------------------------------------------- inference
def test_predict_json_scores_mode_matches_sagemaker_shape():
    torch.manual_seed(0)
    model = small_model(num_classes=3)
    request = {"instances": [{"in0": [1, 2, 3], "in1": [4, 5]}, {"in0": [7], "in1": [8, 9, 10]}]}
    response = o2v.predict_json(model, json.dumps(request))
    assert list(response) == ["predictions"] and len(response["predictions"]) == 2
    scores = torch.tensor([p["scores"] for p in response["predictions"]])
    assert scores.shape == (2, 3)
    torch.testing.assert_close(scores.sum(dim=1), torch.ones(2))
    expected = model(o2v.pad_sequences([[1, 2, 3], [7]], 12), o2v.pad_sequences([[4, 5], [8, 9, 10]], 12)).softmax(dim=1)
    torch.testing.assert_close(scores, expected.detach())
    json.dumps(response)


def test_predict_json_regression_returns_one_score():
    model = small_model(output_layer="mean_squared_error")
    response = o2v.predict_json(model, {"instances": [{"in0": [1], "in1": [2]}]})
    assert len(response["predictions"][0]["scores"]) == 1


@pytest.mark.parametrize("side", ["in0", "in1"])
def test_predict_json_embeddings_mode_uses_that_sides_encoder(side):
    model = small_model("hcnn", enc1_network="bilstm", enc1_token_embedding_dim=6).eval()
    response = o2v.predict_json(model, {"instances": [{side: [3, 4, 5]}, {side: [6]}]})
    embeddings = torch.tensor([p["embeddings"] for p in response["predictions"]])
    expected = model.encode(o2v.pad_sequences([[3, 4, 5], [6]], 12), 0 if side == "in0" else 1)
    torch.testing.assert_close(embeddings, expected.detach())
    assert set(response["predictions"][0]) == {"embeddings"}


@pytest.mark.parametrize(
    "request_, message",
    [
        ({"instances": [{"in0": [1], "in1": [2]}, {"in0": [3]}]}, "mixed inputs"),
        ({"instance": []}, "instances"),
        ({"instances": []}, "non-empty"),
        ({"instances": [{"in2": [1]}]}, "in0"),
        ({"instances": [{"in0": [31]}]}, "enc0: token id 31"),
    ],
)
def test_predict_json_rejects_malformed_requests(request_, message):
    with pytest.raises(ValueError, match=message):
        o2v.predict_json(small_model(), request_)


# ---------------------------------------------------------------------------------- retrieval
@pytest.mark.parametrize("seed", SEEDS)
def test_nearest_neighbours_match_a_brute_force_cosine_loop(seed):
    gen = torch.Generator().manual_seed(seed)
    queries, keys = torch.randn(5, 4, generator=gen), torch.randn(30, 4, generator=gen)
    sims, idx = o2v.nearest_neighbours(queries, keys, 3)
    for q in range(5):
        scored = sorted(((float(torch.dot(queries[q], keys[n]) / (queries[q].norm() * keys[n].norm())), -n) for n in range(30)), reverse=True)
        assert idx[q].tolist() == [-n for _, n in scored[:3]]
        np.testing.assert_allclose(sims[q].numpy(), [s for s, _ in scored[:3]], rtol=1e-5)


def test_nearest_neighbours_ties_exclusion_and_degenerate_vectors():
    keys = torch.tensor([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    sims, idx = o2v.nearest_neighbours(torch.tensor([[3.0, 0.0]]), keys, 3)
    assert idx.tolist() == [[0, 1, 2]]  # tie between keys 0 and 1: the lower index first
    _, idx = o2v.nearest_neighbours(keys[:2], keys, 1, exclude=torch.tensor([0, 1]))
    assert idx.tolist() == [[1], [0]]
    sims, _ = o2v.nearest_neighbours(torch.zeros(1, 2), keys, 4)  # a zero vector is similar to nothing
    assert torch.all(sims == 0)
    with pytest.raises(ValueError, match="k: expected"):
        o2v.nearest_neighbours(keys, keys, 5)
    with pytest.raises(ValueError, match="NaN"):
        o2v.nearest_neighbours(torch.tensor([[float("nan"), 0.0]]), keys, 1)


# ---------------------------------------------------------------------------------- training
def test_fit_object2vec_learns_a_same_token_task_and_stops_on_validation():
    gen = torch.Generator().manual_seed(0)
    a = torch.randint(1, 8, (600, 1), generator=gen)
    same = torch.rand(600, generator=gen) < 0.5
    b = torch.where(same[:, None], a, (a + torch.randint(1, 7, (600, 1), generator=gen) - 1) % 7 + 1)
    y = same.long()
    torch.manual_seed(0)
    model = small_model(enc0_vocab_size=8)
    history = o2v.fit_object2vec(model, (a[:500], b[:500], y[:500]), (a[500:], b[500:], y[500:]), epochs=40, mini_batch_size=32, learning_rate=0.02, early_stopping_patience=3, early_stopping_tolerance=1e-4, progress=False)
    assert o2v.evaluate_pairs(model, a[500:], b[500:], y[500:])["validation:accuracy"] > 0.95
    # the monitored value is the best one up to the tolerance, and training stopped on it
    assert history.best_value <= min(history.metric("validation:cross_entropy")) + 1e-4
    assert history.stopped_early and history.epochs_run < 40


def test_evaluate_pairs_reports_sagemaker_metric_names():
    model = small_model(output_layer="mean_squared_error")
    metrics = o2v.evaluate_pairs(model, torch.tensor([[1], [2]]), torch.tensor([[3], [4]]), torch.tensor([4.0, 2.0]), prefix="test")
    assert set(metrics) == {"test:mean_squared_error", "test:rmse"}
    assert metrics["test:rmse"] == pytest.approx(metrics["test:mean_squared_error"] ** 0.5)


def test_make_optimizer_maps_sagemaker_names():
    params = [torch.nn.Parameter(torch.zeros(2))]
    assert isinstance(o2v.make_optimizer("adam", params, 0.01), torch.optim.Adam)
    assert isinstance(o2v.make_optimizer("adadelta", params, 0.01), torch.optim.Adadelta)
    with pytest.raises(ValueError, match="optimizer"):
        o2v.make_optimizer("lamb", params, 0.01)


# ---------------------------------------------------------------------------------- rating baselines
@pytest.mark.parametrize("seed", SEEDS)
def test_bias_model_matches_a_ridge_least_squares_oracle(seed):
    rng = np.random.default_rng(seed)
    users, items = rng.integers(1, 15, 300), rng.integers(1, 20, 300)
    ratings = rng.integers(1, 6, 300).astype(float)
    model = o2v.fit_bias_model(users, items, ratings, 14, 19, reg=2.0, iterations=500)
    # r - mu = [onehot(user), onehot(item)] b, ridge with damp^2 = reg
    design = sparse.hstack([sparse.csr_matrix((np.ones(300), (np.arange(300), users)), shape=(300, 15)), sparse.csr_matrix((np.ones(300), (np.arange(300), items)), shape=(300, 20))]).tocsr()
    oracle = lsqr(design, ratings - ratings.mean(), damp=np.sqrt(2.0), atol=1e-12, btol=1e-12, iter_lim=10000)[0]
    np.testing.assert_allclose(model["user_bias"], oracle[:15], atol=1e-5)
    np.testing.assert_allclose(model["item_bias"], oracle[15:], atol=1e-5)


def test_ridge_rows_matches_a_per_row_solve():
    rng = np.random.default_rng(0)
    rows = rng.integers(0, 6, 80)
    features = np.hstack([rng.standard_normal((80, 3)), np.ones((80, 1))])
    targets = rng.standard_normal(80)
    factors, bias = o2v._ridge_rows(rows, features, targets, 7, reg=0.5)
    for r in range(7):
        x, t = features[rows == r], targets[rows == r]
        w = np.linalg.solve(x.T @ x + 0.5 * np.eye(4), x.T @ t)
        np.testing.assert_allclose(np.append(factors[r], bias[r]), w, atol=1e-10)


def test_biased_mf_recovers_noiseless_low_rank_ratings():
    rng = np.random.default_rng(1)
    p, q = rng.standard_normal((31, 2)), rng.standard_normal((41, 2))
    users, items = np.divmod(rng.choice(30 * 40, 700, replace=False), 40)
    users, items = users + 1, items + 1
    ratings = 3 + 0.3 * users / 30 + np.einsum("nk,nk->n", p[users], q[items])
    model = o2v.fit_biased_mf(users, items, ratings, 30, 40, rank=2, reg=1e-3, iterations=60)
    rmse = np.sqrt(np.mean((o2v.predict_ratings(model, users, items) - ratings) ** 2))
    bias_only = o2v.fit_bias_model(users, items, ratings, 30, 40, reg=1e-3)
    assert rmse < 0.05 < np.sqrt(np.mean((o2v.predict_ratings(bias_only, users, items) - ratings) ** 2))


def test_rating_baselines_reject_bad_input():
    with pytest.raises(ValueError, match="ids must lie"):
        o2v.fit_bias_model(np.array([5]), np.array([1]), np.array([3.0]), 4, 4)
    with pytest.raises(ValueError, match="NaN"):
        o2v.fit_biased_mf(np.array([1]), np.array([1]), np.array([np.nan]), 4, 4)
    with pytest.raises(ValueError, match="at least one rating"):
        o2v.fit_bias_model(np.array([], dtype=int), np.array([], dtype=int), np.array([]), 4, 4)
