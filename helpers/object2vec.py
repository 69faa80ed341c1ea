"""Object2Vec: two encoders, a comparator and an MLP that learn embeddings from pairs of objects.

Taught in notebooks/03_object2vec.ipynb. Names follow SageMaker's hyperparameters
(`enc0_network`, `comparator_list`, `mlp_layers`, `output_layer`, `negative_sampling_rate`, ...).

Token contract (the one SageMaker leaves implicit): an input is a right-padded (batch, length)
int64 tensor of token ids; id 0 is padding, real tokens are 1..vocab_size-1. A token input such as
a user id is a sequence of length 1.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from scipy import sparse
import torch.nn.functional as F
from torch import nn

from helpers.train import History, fit

PAD_ID = 0
ENCODER_NETWORKS = ("pooled_embedding", "hcnn", "bilstm")
COMPARATORS = ("hadamard", "concat", "abs_diff")
MLP_ACTIVATIONS = ("tanh", "relu", "linear")
OUTPUT_LAYERS = ("softmax", "mean_squared_error")
OPTIMIZERS = ("adadelta", "adagrad", "adam", "sgd", "rmsprop")
DEFAULT_COMPARATOR_LIST = "hadamard, concat, abs_diff"
# What enc0_layers="auto" means here: a 2-layer hierarchy for hcnn, one layer for bilstm.
AUTO_LAYERS = {"pooled_embedding": 1, "hcnn": 2, "bilstm": 1}
# A pooled encoder feeds the comparator directly: a small start keeps the initial random
# interaction u*v small. Convolutions and LSTMs need unit-scale inputs to pass signal at all.
EMBEDDING_INIT_STD = {"pooled_embedding": 0.1, "hcnn": 1.0, "bilstm": 1.0}


# --------------------------------------------------------------------------------------------
# Token inputs: padding and the vocabulary contract
# --------------------------------------------------------------------------------------------
def pad_sequences(sequences: Sequence[Sequence[int]], max_seq_len: int, name: str = "in0") -> torch.Tensor:
    """Right-pad token-id lists with 0 into a (N, L) int64 tensor, L = the longest kept length;
    sequences longer than `max_seq_len` are truncated (as SageMaker does)."""
    if isinstance(max_seq_len, bool) or not isinstance(max_seq_len, int) or max_seq_len < 1:
        raise ValueError(f"max_seq_len: expected an integer >= 1, got {max_seq_len!r}")
    if isinstance(sequences, (str, bytes)) or not isinstance(sequences, Sequence):
        raise TypeError(f"{name}: expected a list of token-id lists, got {type(sequences).__name__}")
    rows = []
    for i, seq in enumerate(sequences):
        if isinstance(seq, (str, bytes)) or not isinstance(seq, (Sequence, np.ndarray)):
            raise TypeError(f"{name}[{i}]: expected a list of integer token ids, got {type(seq).__name__}")
        if len(seq) == 0:
            raise ValueError(f"{name}[{i}]: empty sequence; every input needs at least one token")
        if not all(isinstance(t, (int, np.integer)) and not isinstance(t, bool) for t in seq):
            raise TypeError(f"{name}[{i}]: expected integer token ids, got {list(seq)[:8]!r}")
        rows.append([int(t) for t in seq[:max_seq_len]])
    if not rows:
        raise ValueError(f"{name}: expected at least one sequence")
    length = max(len(r) for r in rows)
    out = torch.zeros(len(rows), length, dtype=torch.long)
    for i, row in enumerate(rows):
        out[i, : len(row)] = torch.tensor(row, dtype=torch.long)
    return out


def check_tokens(tokens: torch.Tensor, vocab_size: int, max_seq_len: int | None = None, encoder: str = "enc0") -> torch.Tensor:
    """Validate a (batch, length) token tensor against the vocabulary contract; return its mask.

    Errors name the encoder, the offending id and the vocabulary size. Returns mask: (batch, length)
    bool, True at real tokens.
    """
    if not isinstance(tokens, torch.Tensor):
        raise TypeError(f"{encoder}: expected a torch.Tensor of token ids, got {type(tokens).__name__}")
    if tokens.dtype not in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8):
        raise TypeError(f"{encoder}: expected integer token ids, got dtype {tokens.dtype}")
    if tokens.dim() != 2:
        raise ValueError(f"{encoder}: expected a (batch, length) tensor of token ids, got shape {tuple(tokens.shape)}")
    if tokens.shape[0] == 0 or tokens.shape[1] == 0:
        raise ValueError(f"{encoder}: expected a non-empty (batch, length) tensor, got shape {tuple(tokens.shape)}")
    if max_seq_len is not None and tokens.shape[1] > max_seq_len:
        raise ValueError(f"{encoder}: sequences of length {tokens.shape[1]} exceed {encoder}_max_seq_len={max_seq_len}; truncate them (pad_sequences does)")
    bad = (tokens < 0) | (tokens >= vocab_size)
    if bool(bad.any()):
        row, col = (int(i) for i in bad.nonzero()[0])
        token = int(tokens[row, col])
        raise ValueError(
            f"{encoder}: token id {token} (row {row}, position {col}) is outside the vocabulary: "
            f"{encoder}_vocab_size={vocab_size} allows ids 0..{vocab_size - 1} (0 is padding); "
            f"raise {encoder}_vocab_size to at least {token + 1} or re-index the tokens"
        )
    mask = tokens != PAD_ID
    if not bool(mask[:, 0].all()):
        row = int((~mask[:, 0]).nonzero()[0])
        raise ValueError(f"{encoder}: row {row} is empty or starts with padding (id 0); sequences are right-padded and need a real token")
    if tokens.shape[1] > 1 and bool((mask[:, 1:] & ~mask[:, :-1]).any()):
        row = int((mask[:, 1:] & ~mask[:, :-1]).any(dim=1).nonzero()[0])
        raise ValueError(f"{encoder}: row {row} has padding (id 0) before a real token; pad on the right only")
    return mask


# --------------------------------------------------------------------------------------------
# Encoders: (batch, length) token ids -> (batch, enc_dim)
# --------------------------------------------------------------------------------------------
def make_token_embedding(vocab_size: int, token_embedding_dim: int, init_std: float) -> nn.Embedding:
    """A token table with a zero row for padding and N(0, init_std^2) rows."""
    embedding = nn.Embedding(vocab_size, token_embedding_dim, padding_idx=PAD_ID)
    with torch.no_grad():
        embedding.weight.normal_(0.0, init_std)
        embedding.weight[PAD_ID].zero_()
    return embedding


class PooledEmbeddingEncoder(nn.Module):
    """Average of the token embeddings over the real tokens (padding ignored), then a linear map
    to `enc_dim` when it differs from `token_embedding_dim`."""

    def __init__(self, vocab_size: int, token_embedding_dim: int, enc_dim: int, max_seq_len: int, embedding: nn.Embedding | None = None, name: str = "enc0"):
        super().__init__()
        self.vocab_size, self.max_seq_len, self.name, self.enc_dim = vocab_size, max_seq_len, name, enc_dim
        self.embedding = embedding if embedding is not None else make_token_embedding(vocab_size, token_embedding_dim, EMBEDDING_INIT_STD["pooled_embedding"])
        self.project = nn.Identity() if token_embedding_dim == enc_dim else nn.Linear(token_embedding_dim, enc_dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        mask = check_tokens(tokens, self.vocab_size, self.max_seq_len, self.name)  # (B, L)
        emb = self.embedding(tokens.long())  # (B, L, E)
        weights = mask.unsqueeze(-1).to(emb.dtype)
        pooled = (emb * weights).sum(dim=1) / weights.sum(dim=1)  # (B, E)
        return self.project(pooled)


class HCNNEncoder(nn.Module):
    """Hierarchical CNN: `layers` same-padded 1-D convolutions of width `cnn_filter_width`
    (each sees a wider span than the last), ReLU, padding zeroed after every layer, then the mean
    over the real positions (a max passes gradient through one position only and stalls training
    here) and a linear map to `enc_dim`."""

    def __init__(self, vocab_size: int, token_embedding_dim: int, enc_dim: int, max_seq_len: int, layers: int = 2, cnn_filter_width: int = 3, embedding: nn.Embedding | None = None, name: str = "enc0"):
        super().__init__()
        if cnn_filter_width < 1:
            raise ValueError(f"{name}_cnn_filter_width: expected an integer >= 1, got {cnn_filter_width}")
        self.vocab_size, self.max_seq_len, self.name, self.enc_dim = vocab_size, max_seq_len, name, enc_dim
        self.embedding = embedding if embedding is not None else make_token_embedding(vocab_size, token_embedding_dim, EMBEDDING_INIT_STD["hcnn"])
        self.width = cnn_filter_width
        channels = [token_embedding_dim] + [enc_dim] * layers
        self.convs = nn.ModuleList(nn.Conv1d(channels[i], channels[i + 1], cnn_filter_width) for i in range(layers))
        self.project = nn.Linear(enc_dim, enc_dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        mask = check_tokens(tokens, self.vocab_size, self.max_seq_len, self.name)  # (B, L)
        keep = mask.unsqueeze(1)  # (B, 1, L)
        x = self.embedding(tokens.long()).transpose(1, 2) * keep  # (B, E, L)
        left = (self.width - 1) // 2
        for conv in self.convs:
            # Zero padding beyond the sequence equals zeroed pad positions, so trailing pads change nothing.
            x = F.relu(conv(F.pad(x, (left, self.width - 1 - left)))) * keep  # (B, enc_dim, L)
        pooled = x.sum(dim=2) / keep.sum(dim=2)  # (B, enc_dim)
        return self.project(pooled)


class BiLSTMEncoder(nn.Module):
    """Multi-layer bidirectional LSTM over the real tokens (pack_padded_sequence, so padding is
    never read); the last forward and first backward hidden states, concatenated, map to `enc_dim`."""

    def __init__(self, vocab_size: int, token_embedding_dim: int, enc_dim: int, max_seq_len: int, layers: int = 1, embedding: nn.Embedding | None = None, dropout: float = 0.0, name: str = "enc0"):
        super().__init__()
        self.vocab_size, self.max_seq_len, self.name, self.enc_dim = vocab_size, max_seq_len, name, enc_dim
        self.embedding = embedding if embedding is not None else make_token_embedding(vocab_size, token_embedding_dim, EMBEDDING_INIT_STD["bilstm"])
        self.lstm = nn.LSTM(token_embedding_dim, enc_dim, num_layers=layers, bidirectional=True, batch_first=True, dropout=dropout if layers > 1 else 0.0)
        self.project = nn.Linear(2 * enc_dim, enc_dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        mask = check_tokens(tokens, self.vocab_size, self.max_seq_len, self.name)  # (B, L)
        lengths = mask.sum(dim=1).cpu()
        emb = self.embedding(tokens.long())  # (B, L, E)
        packed = nn.utils.rnn.pack_padded_sequence(emb, lengths, batch_first=True, enforce_sorted=False)
        _, (hidden, _) = self.lstm(packed)  # hidden: (layers * 2, B, enc_dim)
        return self.project(torch.cat([hidden[-2], hidden[-1]], dim=1))  # (B, enc_dim)


def make_encoder(
    network: str,
    vocab_size: int,
    token_embedding_dim: int,
    enc_dim: int,
    max_seq_len: int,
    layers: int | str = "auto",
    cnn_filter_width: int = 3,
    embedding: nn.Embedding | None = None,
    dropout: float = 0.0,
    name: str = "enc0",
) -> nn.Module:
    """One encoder by SageMaker's name (`pooled_embedding`, `hcnn`, `bilstm`); `embedding` shares a
    token table (tied_token_embedding_weight)."""
    if network not in ENCODER_NETWORKS:
        raise ValueError(f"{name}_network: expected one of {ENCODER_NETWORKS}, got {network!r}")
    for argument, value, low in (("vocab_size", vocab_size, 2), ("token_embedding_dim", token_embedding_dim, 1), ("max_seq_len", max_seq_len, 1), ("enc_dim", enc_dim, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name}_{argument}: expected an integer >= {low}, got {value!r}")
    if layers == "auto":
        layers = AUTO_LAYERS[network]
    if isinstance(layers, bool) or not isinstance(layers, int) or not 1 <= layers <= 4:
        raise ValueError(f"{name}_layers: expected 'auto' or an integer in 1..4, got {layers!r}")
    if embedding is not None and (embedding.num_embeddings != vocab_size or embedding.embedding_dim != token_embedding_dim):
        raise ValueError(
            f"{name}: a shared token embedding of shape ({embedding.num_embeddings}, {embedding.embedding_dim}) does not fit "
            f"{name}_vocab_size={vocab_size}, {name}_token_embedding_dim={token_embedding_dim}"
        )
    if network == "pooled_embedding":
        return PooledEmbeddingEncoder(vocab_size, token_embedding_dim, enc_dim, max_seq_len, embedding, name)
    if network == "hcnn":
        return HCNNEncoder(vocab_size, token_embedding_dim, enc_dim, max_seq_len, layers, cnn_filter_width, embedding, name)
    return BiLSTMEncoder(vocab_size, token_embedding_dim, enc_dim, max_seq_len, layers, embedding, dropout, name)


# --------------------------------------------------------------------------------------------
# Comparator and MLP head
# --------------------------------------------------------------------------------------------
def parse_comparator_list(comparator_list: str | Sequence[str]) -> tuple[str, ...]:
    """SageMaker's comparator_list ("hadamard, concat, abs_diff") as a tuple, order kept."""
    parts = comparator_list.split(",") if isinstance(comparator_list, str) else list(comparator_list)
    names = tuple(str(p).strip().lower() for p in parts if str(p).strip())
    if not names:
        raise ValueError(f"comparator_list: expected a non-empty combination of {COMPARATORS}, got {comparator_list!r}")
    unknown = [n for n in names if n not in COMPARATORS]
    if unknown:
        raise ValueError(f"comparator_list: unknown operator(s) {unknown}; expected names from {COMPARATORS}")
    if len(set(names)) != len(names):
        raise ValueError(f"comparator_list: each operator at most once, got {comparator_list!r}")
    return names


def comparator_dim(comparator_list: str | Sequence[str], enc_dim: int) -> int:
    """Width of the comparator's output for encodings of width `enc_dim`."""
    return sum(2 * enc_dim if n == "concat" else enc_dim for n in parse_comparator_list(comparator_list))


def compare(u: torch.Tensor, v: torch.Tensor, comparator_list: str | Sequence[str] = DEFAULT_COMPARATOR_LIST) -> torch.Tensor:
    """Concatenate u*v (hadamard), [u; v] (concat) and |u - v| (abs_diff) in the order given.

    u, v: (batch, enc_dim) -> (batch, comparator_dim(comparator_list, enc_dim)).
    """
    names = parse_comparator_list(comparator_list)
    if not isinstance(u, torch.Tensor) or not isinstance(v, torch.Tensor):
        raise TypeError("u, v: expected two torch.Tensors")
    if u.dim() != 2 or u.shape != v.shape:
        raise ValueError(f"u, v: expected two (batch, enc_dim) tensors of the same shape, got {tuple(u.shape)} and {tuple(v.shape)}")
    parts = {"hadamard": lambda: [u * v], "concat": lambda: [u, v], "abs_diff": lambda: [(u - v).abs()]}
    return torch.cat([p for name in names for p in parts[name]()], dim=1)


def make_mlp(in_dim: int, mlp_layers: int, mlp_dim: int, mlp_activation: str, dropout: float, out_dim: int) -> nn.Sequential:
    """`mlp_layers` hidden layers of width `mlp_dim` (activation, dropout) and a linear output of
    width `out_dim`: num_classes logits for softmax, 1 for mean_squared_error."""
    if isinstance(mlp_layers, bool) or not isinstance(mlp_layers, int) or not 0 <= mlp_layers <= 10:
        raise ValueError(f"mlp_layers: expected an integer in 0..10, got {mlp_layers!r}")
    if isinstance(mlp_dim, bool) or not isinstance(mlp_dim, int) or mlp_dim < 1:
        raise ValueError(f"mlp_dim: expected an integer >= 1, got {mlp_dim!r}")
    if mlp_activation not in MLP_ACTIVATIONS:
        raise ValueError(f"mlp_activation: expected one of {MLP_ACTIVATIONS}, got {mlp_activation!r}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout: expected a number in [0, 1), got {dropout}")
    activation = {"tanh": nn.Tanh, "relu": nn.ReLU, "linear": nn.Identity}[mlp_activation]
    layers: list[nn.Module] = [nn.Dropout(dropout)] if dropout > 0 else []
    width = in_dim
    for _ in range(mlp_layers):
        layers += [nn.Linear(width, mlp_dim), activation()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = mlp_dim
    layers.append(nn.Linear(width, out_dim))
    return nn.Sequential(*layers)


# --------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------
class Object2Vec(nn.Module):
    """enc0(in0), enc1(in1) -> comparator -> MLP -> class logits (softmax) or a rating
    (mean_squared_error). Keyword arguments are SageMaker's hyperparameters; `enc1_network="enc0"`
    copies enc0's architecture (enc1 keeps its own vocab_size and max_seq_len) but never its weights.
    """

    def __init__(
        self,
        *,
        enc0_vocab_size: int,
        enc0_max_seq_len: int,
        enc0_network: str = "hcnn",
        enc0_token_embedding_dim: int = 300,
        enc0_layers: int | str = "auto",
        enc0_cnn_filter_width: int = 3,
        enc1_network: str = "enc0",
        enc1_vocab_size: int | None = None,
        enc1_max_seq_len: int | None = None,
        enc1_token_embedding_dim: int = 300,
        enc1_layers: int | str = "auto",
        enc1_cnn_filter_width: int = 3,
        enc_dim: int = 4096,
        tied_token_embedding_weight: bool = False,
        comparator_list: str | Sequence[str] = DEFAULT_COMPARATOR_LIST,
        mlp_layers: int = 2,
        mlp_dim: int = 512,
        mlp_activation: str = "linear",
        dropout: float = 0.0,
        output_layer: str = "softmax",
        num_classes: int = 2,
    ):
        super().__init__()
        if output_layer not in OUTPUT_LAYERS:
            raise ValueError(f"output_layer: expected one of {OUTPUT_LAYERS}, got {output_layer!r}")
        if output_layer == "softmax" and (isinstance(num_classes, bool) or not isinstance(num_classes, int) or not 2 <= num_classes <= 30):
            raise ValueError(f"num_classes: expected an integer in 2..30, got {num_classes!r}")
        if enc1_network not in ENCODER_NETWORKS + ("enc0",):
            raise ValueError(f"enc1_network: expected 'enc0' or one of {ENCODER_NETWORKS}, got {enc1_network!r}")
        enc1_vocab_size = enc0_vocab_size if enc1_vocab_size is None else enc1_vocab_size
        enc1_max_seq_len = enc0_max_seq_len if enc1_max_seq_len is None else enc1_max_seq_len
        if enc1_network == "enc0":
            enc1_network, enc1_token_embedding_dim = enc0_network, enc0_token_embedding_dim
            enc1_layers, enc1_cnn_filter_width = enc0_layers, enc0_cnn_filter_width
        self.enc0 = make_encoder(enc0_network, enc0_vocab_size, enc0_token_embedding_dim, enc_dim, enc0_max_seq_len, enc0_layers, enc0_cnn_filter_width, dropout=dropout, name="enc0")
        shared = None
        if tied_token_embedding_weight:
            if enc1_vocab_size != enc0_vocab_size or enc1_token_embedding_dim != enc0_token_embedding_dim:
                raise ValueError(
                    "tied_token_embedding_weight: both encoders must have the same vocab_size and token_embedding_dim, got "
                    f"enc0 ({enc0_vocab_size}, {enc0_token_embedding_dim}) and enc1 ({enc1_vocab_size}, {enc1_token_embedding_dim})"
                )
            shared = self.enc0.embedding
        self.enc1 = make_encoder(enc1_network, enc1_vocab_size, enc1_token_embedding_dim, enc_dim, enc1_max_seq_len, enc1_layers, enc1_cnn_filter_width, shared, dropout, name="enc1")
        self.comparator_list = parse_comparator_list(comparator_list)
        self.output_layer, self.num_classes, self.enc_dim = output_layer, num_classes, enc_dim
        out_dim = num_classes if output_layer == "softmax" else 1
        self.mlp = make_mlp(comparator_dim(self.comparator_list, enc_dim), mlp_layers, mlp_dim, mlp_activation, dropout, out_dim)

    def encode(self, tokens: torch.Tensor, side: int = 0) -> torch.Tensor:
        """Embeddings of one side's inputs: (batch, length) -> (batch, enc_dim)."""
        if side not in (0, 1):
            raise ValueError(f"side: expected 0 (enc0) or 1 (enc1), got {side!r}")
        return (self.enc0 if side == 0 else self.enc1)(tokens)

    def forward(self, in0: torch.Tensor, in1: torch.Tensor) -> torch.Tensor:
        """(batch, L0), (batch, L1) -> (batch, num_classes) logits, or (batch,) ratings."""
        if isinstance(in0, torch.Tensor) and isinstance(in1, torch.Tensor) and in0.dim() >= 1 and in1.dim() >= 1 and in0.shape[0] != in1.shape[0]:
            raise ValueError(f"in0, in1: expected the same batch size, got {in0.shape[0]} and {in1.shape[0]}")
        out = self.mlp(compare(self.enc0(in0), self.enc1(in1), self.comparator_list))
        return out if self.output_layer == "softmax" else out.squeeze(1)


# --------------------------------------------------------------------------------------------
# Negative sampling
# --------------------------------------------------------------------------------------------
def _row_ids(x: torch.Tensor) -> torch.Tensor:
    """An integer id per distinct row of a 2-D tensor: (N, L) -> (N,)."""
    return torch.unique(x, dim=0, return_inverse=True)[1]


def negative_sampling(
    in0: torch.Tensor,
    in1: torch.Tensor,
    negative_sampling_rate: int,
    generator: torch.Generator | None = None,
    max_tries: int = 100,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`negative_sampling_rate` negatives per positive pair: each in0[i] is paired with the in1 of
    another pair, redrawn until the new pair is none of the positive pairs (compared by content).

    in0: (N, L0), in1: (N, L1) positive pairs -> (N * rate, L0), (N * rate, L1) negative pairs,
    all rate negatives of pair i together. Raises ValueError when no negative exists.
    """
    if isinstance(negative_sampling_rate, bool) or not isinstance(negative_sampling_rate, int) or negative_sampling_rate < 0:
        raise ValueError(f"negative_sampling_rate: expected an integer >= 0, got {negative_sampling_rate!r}")
    for name, x in (("in0", in0), ("in1", in1)):
        if not isinstance(x, torch.Tensor) or x.dim() != 2:
            raise ValueError(f"{name}: expected a (N, length) tensor, got {getattr(x, 'shape', type(x).__name__)}")
    if in0.shape[0] != in1.shape[0]:
        raise ValueError(f"in0, in1: expected the same number of pairs, got {in0.shape[0]} and {in1.shape[0]}")
    n = in0.shape[0]
    if negative_sampling_rate == 0 or n == 0:
        return in0[:0], in1[:0]
    left, right = _row_ids(in0), _row_ids(in1)  # (N,), (N,)
    n_right = int(right.max()) + 1
    positive_keys = torch.unique(left * n_right + right)
    if positive_keys.numel() == (int(left.max()) + 1) * n_right:
        raise ValueError("in0, in1: every pairing of these inputs is a positive pair; no negative sample exists")
    anchor = torch.arange(n, device=in0.device).repeat_interleave(negative_sampling_rate)  # (N * rate,)
    partner = torch.randint(0, n, anchor.shape, generator=generator, device="cpu").to(in0.device)
    for _ in range(max_tries):
        is_positive = torch.isin(left[anchor] * n_right + right[partner], positive_keys)
        if not bool(is_positive.any()):
            return in0[anchor], in1[partner]
        redo = is_positive.nonzero().squeeze(1)
        partner[redo] = torch.randint(0, n, (redo.numel(),), generator=generator, device="cpu").to(in0.device)
    # Anchors that pair positively with (almost) everything: fall back to an exhaustive search.
    is_positive = torch.isin(left[anchor] * n_right + right[partner], positive_keys)
    for j in is_positive.nonzero().squeeze(1).tolist():
        options = (~torch.isin(left[anchor[j]] * n_right + right, positive_keys)).nonzero().squeeze(1)
        if options.numel() == 0:
            raise ValueError(f"in0[{int(anchor[j])}]: pairs positively with every in1; no negative sample exists for it")
        partner[j] = options[torch.randint(0, options.numel(), (1,), generator=generator)]
    return in0[anchor], in1[partner]


# --------------------------------------------------------------------------------------------
# Training and evaluation (helpers.train.fit does the loop)
# --------------------------------------------------------------------------------------------
def make_optimizer(name: str, parameters, learning_rate: float, weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """SageMaker's optimizer names mapped to torch optimizers (weight_decay is an L2 penalty)."""
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer: expected one of {OPTIMIZERS}, got {name!r}")
    if not learning_rate > 0:
        raise ValueError(f"learning_rate: expected a positive number, got {learning_rate}")
    if not weight_decay >= 0:
        raise ValueError(f"weight_decay: expected a number >= 0, got {weight_decay}")
    cls = {"adadelta": torch.optim.Adadelta, "adagrad": torch.optim.Adagrad, "adam": torch.optim.Adam, "sgd": torch.optim.SGD, "rmsprop": torch.optim.RMSprop}[name]
    return cls(parameters, lr=learning_rate, weight_decay=weight_decay)


def _as_pairs(name: str, data: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    if not isinstance(data, (tuple, list)) or len(data) != 3:
        raise TypeError(f"{name}: expected (in0, in1, labels) tensors")
    in0, in1, labels = (torch.as_tensor(x) for x in data)
    if in0.dim() != 2 or in1.dim() != 2 or labels.dim() != 1:
        raise ValueError(f"{name}: expected in0 (N, L0), in1 (N, L1), labels (N,), got {tuple(in0.shape)}, {tuple(in1.shape)}, {tuple(labels.shape)}")
    if not in0.shape[0] == in1.shape[0] == labels.shape[0]:
        raise ValueError(f"{name}: in0, in1 and labels disagree on N: {in0.shape[0]}, {in1.shape[0]}, {labels.shape[0]}")
    if in0.shape[0] == 0:
        raise ValueError(f"{name}: no pairs")
    return in0, in1, labels


def pair_batches(
    in0: torch.Tensor,
    in1: torch.Tensor,
    labels: torch.Tensor,
    mini_batch_size: int,
    generator: torch.Generator,
    negative_sampling_rate: int = 0,
) -> Callable[[int], Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]]:
    """`epoch -> shuffled (in0, in1, labels) mini-batches` for helpers.train.fit. With a
    negative_sampling_rate, fresh negatives (label 0) join the positive pairs every epoch."""
    if isinstance(mini_batch_size, bool) or not isinstance(mini_batch_size, int) or mini_batch_size < 1:
        raise ValueError(f"mini_batch_size: expected an integer >= 1, got {mini_batch_size!r}")
    in0, in1, labels = _as_pairs("pairs", (in0, in1, labels))

    def epoch_batches(epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        a, b, y = in0, in1, labels
        if negative_sampling_rate:
            na, nb = negative_sampling(in0, in1, negative_sampling_rate, generator)
            width0, width1 = max(a.shape[1], na.shape[1]), max(b.shape[1], nb.shape[1])
            a = torch.cat([F.pad(a, (0, width0 - a.shape[1])), F.pad(na, (0, width0 - na.shape[1]))])
            b = torch.cat([F.pad(b, (0, width1 - b.shape[1])), F.pad(nb, (0, width1 - nb.shape[1]))])
            y = torch.cat([y, torch.zeros(na.shape[0], dtype=y.dtype)])
        order = torch.randperm(y.shape[0], generator=generator)
        for start in range(0, y.shape[0], mini_batch_size):
            idx = order[start : start + mini_batch_size]
            yield a[idx], b[idx], y[idx]

    return epoch_batches


def pair_loss(model: Object2Vec, batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Cross-entropy for softmax output, mean squared error for regression."""
    in0, in1, labels = batch
    out = model(in0, in1)
    if model.output_layer == "softmax":
        return F.cross_entropy(out, labels.long())
    return F.mse_loss(out, labels.float())


@torch.no_grad()
def predict_pairs(model: Object2Vec, in0: torch.Tensor, in1: torch.Tensor, batch_size: int = 8192) -> torch.Tensor:
    """Model outputs for many pairs in eval mode: (N, num_classes) probabilities or (N,) ratings."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    outs = []
    for start in range(0, in0.shape[0], batch_size):
        out = model(in0[start : start + batch_size].to(device), in1[start : start + batch_size].to(device))
        outs.append((out.softmax(dim=1) if model.output_layer == "softmax" else out).float().cpu())
    model.train(was_training)
    return torch.cat(outs)


def evaluate_pairs(model: Object2Vec, in0: torch.Tensor, in1: torch.Tensor, labels: torch.Tensor, prefix: str = "validation") -> dict[str, float]:
    """SageMaker's metrics: `prefix:mean_squared_error` (and `prefix:rmse`) for regression,
    `prefix:accuracy` and `prefix:cross_entropy` for classification."""
    in0, in1, labels = _as_pairs(prefix, (in0, in1, labels))
    out = predict_pairs(model, in0, in1)
    if model.output_layer == "softmax":
        labels = labels.long()
        picked = out[torch.arange(len(labels)), labels].clamp_min(1e-12)
        return {f"{prefix}:accuracy": float((out.argmax(dim=1) == labels).float().mean()), f"{prefix}:cross_entropy": float(-picked.log().mean())}
    mse = float(((out - labels.float()) ** 2).mean())
    return {f"{prefix}:mean_squared_error": mse, f"{prefix}:rmse": math.sqrt(mse)}


def fit_object2vec(
    model: Object2Vec,
    train: Sequence[torch.Tensor],
    validation: Sequence[torch.Tensor],
    *,
    epochs: int = 30,
    mini_batch_size: int = 32,
    learning_rate: float = 0.0004,
    optimizer: str = "adam",
    weight_decay: float = 0.0,
    early_stopping_patience: int = 3,
    early_stopping_tolerance: float = 0.01,
    negative_sampling_rate: int = 0,
    min_epochs: int = 0,
    seed: int = 0,
    device: torch.device | str = "cpu",
    progress: bool = True,
    desc: str = "object2vec",
) -> History:
    """Train with helpers.train.fit: early stopping on the validation loss (never the test split),
    not before `min_epochs` (recurrent and convolutional encoders can sit on a plateau for a few
    epochs before they learn), best weights restored. train/validation: (in0, in1, labels)."""
    train = _as_pairs("train", train)
    validation = _as_pairs("validation", validation)
    model.to(device)
    if model.output_layer == "mean_squared_error":
        # Start from the mean rating rather than 0, so the first epochs learn structure, not the offset.
        with torch.no_grad():
            model.mlp[-1].bias.fill_(float(train[2].float().mean()))
    generator = torch.Generator().manual_seed(seed)
    batches = pair_batches(*train, mini_batch_size, generator, negative_sampling_rate)
    monitor = "validation:mean_squared_error" if model.output_layer == "mean_squared_error" else "validation:cross_entropy"
    return fit(
        model,
        batches,
        pair_loss,
        make_optimizer(optimizer, model.parameters(), learning_rate, weight_decay),
        epochs,
        device=device,
        evaluate=lambda m: evaluate_pairs(m, *validation),
        monitor=monitor,
        mode="min",
        patience=early_stopping_patience,
        tolerance=early_stopping_tolerance,
        min_epochs=min_epochs,
        progress=progress,
        desc=desc,
    )


# --------------------------------------------------------------------------------------------
# Inference in SageMaker's JSON shapes
# --------------------------------------------------------------------------------------------
@torch.no_grad()
def predict_json(model: Object2Vec, request: str | Mapping[str, Any]) -> dict[str, list[dict[str, list[float]]]]:
    """Answer a request the way the SageMaker endpoint does.

    `{"instances": [{"in0": [...], "in1": [...]}, ...]}` -> `{"predictions": [{"scores": [...]}, ...]}`
    (class probabilities, or one rating); `{"instances": [{"in0": [...]}, ...]}` (or only in1) ->
    `{"predictions": [{"embeddings": [...]}, ...]}` from that side's encoder.
    """
    if isinstance(request, str):
        request = json.loads(request)
    if not isinstance(request, Mapping) or "instances" not in request:
        raise ValueError('request: expected {"instances": [{"in0": [...], "in1": [...]}, ...]}')
    instances = request["instances"]
    if not isinstance(instances, list) or not instances:
        raise ValueError("request['instances']: expected a non-empty list")
    for i, inst in enumerate(instances):
        if not isinstance(inst, Mapping) or not inst or set(inst) - {"in0", "in1"}:
            raise ValueError(f"instances[{i}]: expected an object with 'in0' and/or 'in1' only, got {inst!r}")
    keys = {frozenset(inst) for inst in instances}
    if len(keys) != 1:
        raise ValueError("instances: mixed inputs; send either both in0 and in1 (scores) or only one of them (embeddings) in every instance")
    present = sorted(next(iter(keys)))
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    encoders = {"in0": model.enc0, "in1": model.enc1}
    tensors = {k: pad_sequences([inst[k] for inst in instances], encoders[k].max_seq_len, name=k).to(device) for k in present}
    try:
        if len(present) == 2:
            out = model(tensors["in0"], tensors["in1"]).float()
            out = out.softmax(dim=1) if model.output_layer == "softmax" else out.unsqueeze(1)
            return {"predictions": [{"scores": row} for row in out.cpu().tolist()]}
        side = 0 if present == ["in0"] else 1
        emb = model.encode(tensors[present[0]], side).float()
        return {"predictions": [{"embeddings": row} for row in emb.cpu().tolist()]}
    finally:
        model.train(was_training)


# --------------------------------------------------------------------------------------------
# Retrieval
# --------------------------------------------------------------------------------------------
def nearest_neighbours(
    queries: torch.Tensor, keys: torch.Tensor, k: int, exclude: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k keys by cosine similarity for each query (ties: the lower key index first).

    queries: (Q, d), keys: (N, d), exclude: optional (Q,) key index to leave out per query (e.g. the
    query itself; -1 for none). Returns (similarities (Q, k), indices (Q, k)), best first. A zero
    vector has similarity 0 to everything.
    """
    for name, x in (("queries", queries), ("keys", keys)):
        if not isinstance(x, torch.Tensor) or x.dim() != 2:
            raise ValueError(f"{name}: expected a 2-D tensor, got {getattr(x, 'shape', type(x).__name__)}")
        if not torch.is_floating_point(x):
            raise TypeError(f"{name}: expected floating-point vectors, got {x.dtype}")
        if bool(torch.isnan(x).any()):
            raise ValueError(f"{name}: contains NaN")
    if queries.shape[1] != keys.shape[1]:
        raise ValueError(f"queries, keys: expected the same dimension, got {queries.shape[1]} and {keys.shape[1]}")
    available = keys.shape[0] - (1 if exclude is not None else 0)
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= available:
        raise ValueError(f"k: expected an integer in 1..{available} (the number of keys available), got {k!r}")
    sims = F.normalize(queries, dim=1) @ F.normalize(keys, dim=1).T  # (Q, N)
    if exclude is not None:
        exclude = torch.as_tensor(exclude, device=sims.device).long()
        if exclude.shape != (queries.shape[0],):
            raise ValueError(f"exclude: expected shape ({queries.shape[0]},), got {tuple(exclude.shape)}")
        rows = (exclude >= 0).nonzero().squeeze(1)
        sims = sims.clone()
        sims[rows, exclude[rows]] = float("-inf")
    values, indices = torch.sort(sims, dim=1, descending=True, stable=True)
    return values[:, :k], indices[:, :k]


# --------------------------------------------------------------------------------------------
# Rating baselines measured beside Object2Vec: user/item biases and biased matrix factorisation
# --------------------------------------------------------------------------------------------
def _check_ratings(users: np.ndarray, items: np.ndarray, ratings: np.ndarray, n_users: int, n_items: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    users, items, ratings = np.asarray(users, dtype=np.int64), np.asarray(items, dtype=np.int64), np.asarray(ratings, dtype=np.float64)
    if not users.shape == items.shape == ratings.shape or users.ndim != 1:
        raise ValueError(f"users, items, ratings: expected three (N,) arrays, got {users.shape}, {items.shape}, {ratings.shape}")
    if users.size == 0:
        raise ValueError("ratings: expected at least one rating")
    if users.min() < 0 or users.max() > n_users or items.min() < 0 or items.max() > n_items:
        raise ValueError(f"users, items: ids must lie in 0..n_users={n_users} and 0..n_items={n_items}")
    if not np.all(np.isfinite(ratings)):
        raise ValueError("ratings: contains NaN or infinity")
    return users, items, ratings


def fit_bias_model(
    users: np.ndarray, items: np.ndarray, ratings: np.ndarray, n_users: int, n_items: int,
    reg: float = 5.0, iterations: int = 20,
) -> dict[str, np.ndarray | float]:
    """The user/item bias model r ~ mu + b_u + b_i, ridge-regularised (`reg`), by alternating
    exact least squares. ids run 0..n_users / 0..n_items. Returns {"mu", "user_bias", "item_bias"}."""
    users, items, ratings = _check_ratings(users, items, ratings, n_users, n_items)
    mu = float(ratings.mean())
    bu, bi = np.zeros(n_users + 1), np.zeros(n_items + 1)
    for _ in range(iterations):
        bi = np.bincount(items, ratings - mu - bu[users], n_items + 1) / (reg + np.bincount(items, minlength=n_items + 1))
        bu = np.bincount(users, ratings - mu - bi[items], n_users + 1) / (reg + np.bincount(users, minlength=n_users + 1))
    return {"mu": mu, "user_bias": bu, "item_bias": bi}


def fit_biased_mf(
    users: np.ndarray, items: np.ndarray, ratings: np.ndarray, n_users: int, n_items: int,
    rank: int = 10, reg: float = 5.0, iterations: int = 15, seed: int = 0,
) -> dict[str, np.ndarray | float]:
    """Biased matrix factorisation r ~ mu + b_u + b_i + p_u . q_i by alternating least squares
    (each half-step is an exact ridge solve per user / per item, regularisation `reg`).
    Returns {"mu", "user_bias", "item_bias", "user_factors" (n_users+1, rank), "item_factors"}."""
    users, items, ratings = _check_ratings(users, items, ratings, n_users, n_items)
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise ValueError(f"rank: expected an integer >= 1, got {rank!r}")
    rng = np.random.default_rng(seed)
    mu = float(ratings.mean())
    P = 0.1 * rng.standard_normal((n_users + 1, rank))
    Q = 0.1 * rng.standard_normal((n_items + 1, rank))
    bu, bi = np.zeros(n_users + 1), np.zeros(n_items + 1)
    for _ in range(iterations):
        # Users: solve for [p_u, b_u] against features [q_i, 1] and targets r - mu - b_i.
        P, bu = _ridge_rows(users, np.hstack([Q[items], np.ones((len(items), 1))]), ratings - mu - bi[items], n_users + 1, reg)
        Q, bi = _ridge_rows(items, np.hstack([P[users], np.ones((len(users), 1))]), ratings - mu - bu[users], n_items + 1, reg)
    return {"mu": mu, "user_bias": bu, "item_bias": bi, "user_factors": P, "item_factors": Q}


def _ridge_rows(rows: np.ndarray, features: np.ndarray, targets: np.ndarray, n_rows: int, reg: float) -> tuple[np.ndarray, np.ndarray]:
    """For every row id r, argmin_w sum_{n: rows[n]=r} (targets[n] - features[n] . w)^2 + reg |w|^2.
    features: (N, k+1) whose last column is the bias feature. Returns (factors (n_rows, k), bias (n_rows,))."""
    k1 = features.shape[1]
    # A row-indicator matrix turns the per-row sums into one sparse product.
    indicator = sparse.csr_matrix((np.ones(len(rows)), (rows, np.arange(len(rows)))), shape=(n_rows, len(rows)))
    gram = indicator @ np.einsum("ni,nj->nij", features, features).reshape(len(rows), k1 * k1)  # (n_rows, k1*k1)
    rhs = indicator @ (features * targets[:, None])  # (n_rows, k1)
    w = np.linalg.solve(gram.reshape(n_rows, k1, k1) + reg * np.eye(k1), rhs[:, :, None])[:, :, 0]
    return w[:, :-1], w[:, -1]


def predict_ratings(model: Mapping[str, Any], users: np.ndarray, items: np.ndarray) -> np.ndarray:
    """Predictions of a bias model or biased MF (fit_bias_model / fit_biased_mf) for (N,) id pairs."""
    users, items = np.asarray(users, dtype=np.int64), np.asarray(items, dtype=np.int64)
    pred = model["mu"] + model["user_bias"][users] + model["item_bias"][items]
    if "user_factors" in model:
        pred = pred + np.einsum("nk,nk->n", model["user_factors"][users], model["item_factors"][items])
    return pred
