"""The Oracle: a Temporal Fusion Transformer (Lim et al. 2021) forecasting quantiles of future returns.

Plain PyTorch, not pytorch-forecasting on Lightning as the product notes' guide used: those bring a
large dependency tree (Lightning, its trainer, data loaders and callbacks) for one model, and their
variable selection runs each variable's small network in a Python loop, slow on the 2-core CPUs we
train and test on. The cost is the few hundred lines below; here every variable's network runs in
one batched matmul over all variables.

Architecture (the paper's section 4), E = encoder_bars past steps, D = decoder_bars future steps:

1. Inputs: each real-valued variable is standardised (buffers fitted on training bars only:
   tft_data.fit_scaling, set_scaling) and embedded by its own linear map 1 -> variable_hidden.
2. Variable selection networks (VSN), one over the observed past inputs [B, E, F_obs], one over the
   known future inputs [B, D, F_known]: a GRN over a step's flattened embeddings gives softmax
   weights over the variables, each variable's own GRN maps its embedding to `hidden`, and the
   step's input is their weighted sum (eqs. 6-8).
3. An LSTM encoder over the E past steps (zero initial state) and an LSTM decoder over the D future
   steps, initialised from the encoder's final (h, c); then a gated skip over both (GLU, add the VSN
   output, layer norm; eq. 17).
4. Interpretable multi-head attention (eqs. 13-16): per-head queries and keys, one value projection
   shared by the heads, the heads' outputs averaged, so the heads' mean attention is one pattern to
   read. Queries are the D decoder steps, keys all E + D steps, and decoder step k attends only to
   the encoder steps and the decoder steps <= k (a causal mask). Then a gated skip, a position-wise
   GRN and a gated skip back to the LSTM output (eqs. 20-22).
5. Output: a linear map to the quantiles per step, made non-crossing (the lowest quantile plus
   softplus increments: the policy compares a lower and an upper quantile), times `target_scale`.

Omitted, with reasons: the static covariate encoders and static enrichment. There are no static
covariates (one model per instrument), and without a context the enrichment GRN would only add
depth; so the VSNs take no context and the encoder starts from a zero state. Known inputs go to the
decoder only: indicators-v1 already holds the same four time columns for the past bars.

Target: the cumulative log return ln(c[t + k] / c[t]), k = 1 .. D (tft_data.py says why). Forecasts
are in those units. `target_scale` [D] = return_std * sqrt(k) keeps the network's raw output O(1);
take the loss in those units (quantile_loss(..., scale=model.target_scale)) so that the notes'
gradient clip of 0.1 acts on normalised targets, as in pytorch-forecasting.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

from shared.config.challengers import TFTConfig

__all__ = [
    "GatedResidualNetwork",
    "InterpretableMultiHeadAttention",
    "TFTConfig",
    "TFTOutput",
    "TemporalFusionTransformer",
    "VariableSelection",
    "coverage",
    "quantile_loss",
]


class _Linear(nn.Module):
    """x @ W + b over the last dim; with `groups` G > 0, G independent maps, x laid out [G, N, n_in]."""

    def __init__(self, n_in: int, n_out: int, *, groups: int = 0, bias: bool = True) -> None:
        super().__init__()
        self.groups = groups
        bound = 1.0 / math.sqrt(n_in)  # nn.Linear's initialisation
        lead = (groups,) if groups else ()
        self.weight = nn.Parameter(torch.empty(*lead, n_in, n_out).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(*lead, *((1,) if groups else ()), n_out).uniform_(-bound, bound)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.groups:
            return torch.bmm(x, self.weight) if self.bias is None else torch.baddbmm(self.bias, x, self.weight)
        y = x @ self.weight
        return y if self.bias is None else y + self.bias


class _LayerNorm(nn.Module):
    """Layer norm over the last dim; with `groups` G > 0, a gain and bias per group ([G, N, width])."""

    def __init__(self, width: int, *, groups: int = 0) -> None:
        super().__init__()
        self.groups = groups
        lead = (groups, 1) if groups else ()
        self.weight = nn.Parameter(torch.ones(*lead, width))
        self.bias = nn.Parameter(torch.zeros(*lead, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.groups:
            return F.layer_norm(x, x.shape[-1:]) * self.weight + self.bias
        return F.layer_norm(x, x.shape[-1:], self.weight, self.bias)


class GateAddNorm(nn.Module):
    """The gated skip connection: LayerNorm(skip + GLU(dropout(x))) (eq. 5)."""

    def __init__(self, n_in: int, n_out: int, dropout: float, *, groups: int = 0) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.gate = _Linear(n_in, 2 * n_out, groups=groups)
        self.norm = _LayerNorm(n_out, groups=groups)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.norm(skip + F.glu(self.gate(self.dropout(x)), dim=-1))


class GatedResidualNetwork(nn.Module):
    """GRN(a, c) = LayerNorm(skip(a) + GLU(W1 ELU(W2 a + W3 c + b2) + b1)) (eqs. 2-5); skip is the
    identity when n_in == n_out, else linear. `context` (its width; 0: none) must broadcast against
    W2 a. With `groups` G > 0, G independent GRNs over a [G, N, n_in] input."""

    def __init__(self, n_in: int, n_hidden: int, n_out: int, dropout: float, *, context: int = 0, groups: int = 0) -> None:
        super().__init__()
        self.w2 = _Linear(n_in, n_hidden, groups=groups)
        self.w3 = _Linear(context, n_hidden, bias=False) if context else None
        self.w1 = _Linear(n_hidden, n_hidden, groups=groups)
        self.skip = _Linear(n_in, n_out, groups=groups) if n_in != n_out else None
        self.gate = GateAddNorm(n_hidden, n_out, dropout, groups=groups)

    def forward(self, a: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        h = self.w2(a)
        if self.w3 is not None:
            if context is None:
                raise ValueError("this GRN was built with a context: pass one")
            h = h + self.w3(context)
        h = self.w1(F.elu(h))
        return self.gate(h, a if self.skip is None else self.skip(a))


class VariableSelection(nn.Module):
    """Per step: softmax weights over V variables from a GRN of their flattened embeddings, and the
    weighted sum of each variable's own GRN of its embedding (eqs. 6-8)."""

    def __init__(self, variables: int, embedding: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.embed_weight = nn.Parameter(torch.empty(variables, 1, embedding).uniform_(-1.0, 1.0))  # Linear(1, E) each
        self.embed_bias = nn.Parameter(torch.empty(variables, 1, embedding).uniform_(-1.0, 1.0))
        self.flat = GatedResidualNetwork(variables * embedding, min(hidden, variables), variables, dropout)
        self.each = GatedResidualNetwork(embedding, min(embedding, hidden), hidden, dropout, groups=variables)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x [B, T, V] -> (selected [B, T, hidden], weights [B, T, V])."""
        b, t, v = x.shape
        embedded = x.reshape(b * t, v).T.unsqueeze(-1) * self.embed_weight + self.embed_bias  # [V, N, E]
        weights = torch.softmax(self.flat(embedded.transpose(0, 1).reshape(b * t, -1)), dim=-1)  # [N, V]
        selected = (weights.T.unsqueeze(-1) * self.each(embedded)).sum(dim=0)  # [N, hidden]
        return selected.view(b, t, -1), weights.view(b, t, v)


class InterpretableMultiHeadAttention(nn.Module):
    """Per-head queries and keys, one value projection shared by all heads, the heads averaged
    (eqs. 14-16): the heads' mean attention is the weight each output gives each position."""

    def __init__(self, hidden: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.head_width = hidden // heads
        self.query = nn.Linear(hidden, heads * self.head_width)
        self.key = nn.Linear(hidden, heads * self.head_width)
        self.value = nn.Linear(hidden, self.head_width)
        self.out = nn.Linear(self.head_width, hidden)
        self.dropout = nn.Dropout(dropout)

    def forward(self, query: torch.Tensor, memory: torch.Tensor, blocked: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """query [B, Q, H], memory [B, K, H], blocked [Q, K] bool (True: may not attend) ->
        (output [B, Q, H], the heads' mean attention [B, Q, K])."""
        b, n_query, _ = query.shape
        n_key = memory.shape[1]
        q = self.query(query).view(b, n_query, self.heads, self.head_width).transpose(1, 2)  # [B, heads, Q, d]
        k = self.key(memory).view(b, n_key, self.heads, self.head_width).transpose(1, 2)     # [B, heads, K, d]
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(self.head_width)
        attention = torch.softmax(scores.masked_fill(blocked, float("-inf")), dim=-1)       # [B, heads, Q, K]
        per_head = self.dropout(attention) @ self.value(memory).unsqueeze(1)                # [B, heads, Q, d]
        return self.out(per_head.mean(dim=1)), attention.mean(dim=1)


class TFTOutput(NamedTuple):
    """A forecast and what it attended to (E = encoder_bars, D = decoder_bars, Q quantiles)."""

    quantiles: torch.Tensor         # [B, D, Q] quantiles of ln(c[t + k] / c[t]), k = 1 .. D, ascending in Q
    observed_weights: torch.Tensor  # [B, E, F_obs] selection weights of the past inputs (sum 1 over F_obs)
    known_weights: torch.Tensor     # [B, D, F_known] selection weights of the known future inputs
    attention: torch.Tensor         # [B, D, E + D] each decoder step's mean attention; 0 after the step itself


def _non_crossing(raw: torch.Tensor) -> torch.Tensor:
    """[..., Q] raw outputs -> ascending quantiles: the first, then softplus increments."""
    return torch.cat([raw[..., :1], raw[..., :1] + torch.cumsum(F.softplus(raw[..., 1:]), dim=-1)], dim=-1)


class TemporalFusionTransformer(nn.Module):
    """(observed [B, E, F_obs], known [B, D, F_known]) -> TFTOutput; see the module docstring."""

    def __init__(self, config: TFTConfig = TFTConfig()) -> None:
        super().__init__()
        c = config
        self.config = c
        self.observed_selection = VariableSelection(c.observed_inputs, c.variable_hidden, c.hidden, c.dropout)
        self.known_selection = VariableSelection(c.known_inputs, c.variable_hidden, c.hidden, c.dropout)
        lstm_dropout = c.dropout if c.lstm_layers > 1 else 0.0
        self.encoder = nn.LSTM(c.hidden, c.hidden, c.lstm_layers, batch_first=True, dropout=lstm_dropout)
        self.decoder = nn.LSTM(c.hidden, c.hidden, c.lstm_layers, batch_first=True, dropout=lstm_dropout)
        self.lstm_gate = GateAddNorm(c.hidden, c.hidden, c.dropout)
        self.attention = InterpretableMultiHeadAttention(c.hidden, c.heads, c.dropout)
        self.attention_gate = GateAddNorm(c.hidden, c.hidden, c.dropout)
        self.position_wise = GatedResidualNetwork(c.hidden, c.hidden, c.hidden, c.dropout)
        self.output_gate = GateAddNorm(c.hidden, c.hidden, 0.0)
        self.head = nn.Linear(c.hidden, len(c.quantiles))
        self.register_buffer("observed_mean", torch.zeros(c.observed_inputs))
        self.register_buffer("observed_std", torch.ones(c.observed_inputs))
        self.register_buffer("target_scale", torch.arange(1, c.decoder_bars + 1, dtype=torch.float32).sqrt())  # [D]
        # decoder step i (position E + i) may attend to positions j <= E + i
        position = torch.arange(c.encoder_bars + c.decoder_bars)
        blocked = position[None, :] > (c.encoder_bars + torch.arange(c.decoder_bars))[:, None]  # [D, E + D]
        self.register_buffer("blocked", blocked, persistent=False)

    def set_scaling(self, observed_mean, observed_std, return_std: float) -> None:
        """Standardise the observed inputs with [F_obs] mean and std, and scale the target at step k
        by return_std * sqrt(k) (tft_data.fit_scaling fits all three on training bars)."""
        with torch.no_grad():
            self.observed_mean.copy_(torch.as_tensor(observed_mean, dtype=torch.float32))
            self.observed_std.copy_(torch.as_tensor(observed_std, dtype=torch.float32))
            steps = torch.arange(1, self.config.decoder_bars + 1, dtype=torch.float32, device=self.target_scale.device)
            self.target_scale.copy_(float(return_std) * steps.sqrt())

    def forward(self, observed: torch.Tensor, known: torch.Tensor) -> TFTOutput:
        c = self.config
        b = observed.shape[0]
        if observed.shape != (b, c.encoder_bars, c.observed_inputs) or known.shape != (b, c.decoder_bars, c.known_inputs):
            raise ValueError(f"expected observed [B, {c.encoder_bars}, {c.observed_inputs}] and known "
                             f"[B, {c.decoder_bars}, {c.known_inputs}]; got {tuple(observed.shape)}, {tuple(known.shape)}")
        past, observed_weights = self.observed_selection((observed - self.observed_mean) / self.observed_std)
        future, known_weights = self.known_selection(known)
        encoded, state = self.encoder(past)
        decoded, _ = self.decoder(future, state)
        temporal = self.lstm_gate(torch.cat([encoded, decoded], dim=1), torch.cat([past, future], dim=1))  # [B, E + D, H]
        steps = temporal[:, c.encoder_bars:]  # [B, D, H]
        attended, attention = self.attention(steps, temporal, self.blocked)
        x = self.position_wise(self.attention_gate(attended, steps))
        raw = self.head(self.output_gate(x, steps))  # [B, D, Q]
        return TFTOutput(self.target_scale[:, None] * _non_crossing(raw), observed_weights, known_weights, attention)


def quantile_loss(pred: torch.Tensor, target: torch.Tensor, quantiles, *, scale: torch.Tensor | None = None) -> torch.Tensor:
    """Pinball loss max(q e, (q - 1) e), e = target - pred, mean over batch, steps and quantiles.
    pred [B, D, Q], target [B, D]; `scale` [D] divides the errors (the model's target_scale)."""
    if pred.shape[:-1] != target.shape or pred.shape[-1] != len(quantiles):
        raise ValueError(f"pred {tuple(pred.shape)} must be target {tuple(target.shape)} + [{len(quantiles)}]")
    q = torch.as_tensor(quantiles, dtype=pred.dtype, device=pred.device)
    error = target.unsqueeze(-1) - pred
    if scale is not None:
        error = error / scale[:, None]
    return torch.maximum(q * error, (q - 1) * error).mean()


def coverage(pred: torch.Tensor, target: torch.Tensor, quantiles) -> dict[float, float]:
    """{q: the fraction of targets below the forecast q-quantile}: calibrated forecasts give about q.
    pred [B, D, Q], target [B, D]; over all batch rows and steps."""
    if pred.shape[:-1] != target.shape or pred.shape[-1] != len(quantiles):
        raise ValueError(f"pred {tuple(pred.shape)} must be target {tuple(target.shape)} + [{len(quantiles)}]")
    below = (target.unsqueeze(-1) < pred).float().mean(dim=tuple(range(target.dim())))
    return {float(q): float(f) for q, f in zip(quantiles, below)}
