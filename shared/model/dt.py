"""The Strategist: a Decision Transformer (Chen et al. 2021) choosing actions conditioned on the return
still to come.

Plain PyTorch: the paper's GPT-2 (from Hugging Face transformers) is the torch.nn.TransformerEncoder
below with a causal mask and pre-norm blocks, which is what GPT-2's blocks are; no new dependency.

Architecture, K = context_steps, H = hidden, per window of up to K steps (dt_data.py builds them):

1. Tokens: per step t three, in the order (R_t, s_t, a_t): the return-to-go R_t (already divided by
   return_scale) by a linear map 1 -> H, the state s_t (standardised by the buffers `state_mean`,
   `state_std`: set_scaling) by a linear map state_inputs -> H, the action a_t by an embedding of
   num_actions. To all three tokens of a step is added a learned embedding of its position in the
   window: slot k of a K'-step input (K' <= K) is position K - K' + k, so the newest step is always
   position K - 1 and a position says how many steps before the decision a step is.
2. Layer norm and dropout on the 3K' tokens, then `layers` pre-norm transformer blocks (GELU, width
   4H) under a causal mask, and a final layer norm.
3. Head: a linear map from the s_t token's output to a_t's logits. Under the causal mask that token
   sees R_<=t, s_<=t and a_<t only: never its own action, nor anything after step t.

Padding: `mask` [B, K'] marks real steps. No token attends to a padded token except a padded token to
itself (so every attention row has a key and none is NaN); a padded step's logits are meaningless and
`loss` leaves them out. The paper's discrete-action (Atari) variant is followed: cross-entropy on the
actions, greedy choice at a decision (`act`).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from shared.config.challengers import DTConfig
from shared.model.standardise import set_standardisation

__all__ = ["DTConfig", "DecisionTransformer"]

TOKENS_PER_STEP = 3  # R_t, s_t, a_t
STATE_TOKEN = 1      # a_t is predicted from the output at s_t's token


class DecisionTransformer(nn.Module):
    """(returns_to_go [B, K, 1], states [B, K, S], actions [B, K], mask [B, K]) -> logits [B, K, A];
    see the module docstring."""

    def __init__(self, config: DTConfig = DTConfig()) -> None:
        super().__init__()
        c = config
        self.config = c
        self.embed_return = nn.Linear(1, c.hidden)
        self.embed_state = nn.Linear(c.state_inputs, c.hidden)
        self.embed_action = nn.Embedding(c.num_actions, c.hidden)
        self.embed_position = nn.Embedding(c.context_steps, c.hidden)
        self.embed_norm = nn.LayerNorm(c.hidden)
        self.embed_dropout = nn.Dropout(c.dropout)
        block = nn.TransformerEncoderLayer(c.hidden, c.heads, 4 * c.hidden, c.dropout, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(block, c.layers, norm=nn.LayerNorm(c.hidden), enable_nested_tensor=False)
        self.head = nn.Linear(c.hidden, c.num_actions)
        self.register_buffer("state_mean", torch.zeros(c.state_inputs))
        self.register_buffer("state_std", torch.ones(c.state_inputs))

    def set_scaling(self, state_mean, state_std) -> None:
        """Standardise the states with [S] mean and std (dt_data.fit_state_scaling fits them on training steps)."""
        set_standardisation(self.state_mean, self.state_std, state_mean, state_std)

    def _check(self, returns_to_go: torch.Tensor, states: torch.Tensor, actions: torch.Tensor,
               mask: torch.Tensor | None) -> torch.Tensor:
        c = self.config
        b, k = actions.shape[:2] if actions.dim() == 2 else (-1, -1)
        if (not 1 <= k <= c.context_steps or returns_to_go.shape != (b, k, 1) or states.shape != (b, k, c.state_inputs)
                or (mask is not None and mask.shape != (b, k))):
            raise ValueError(f"expected returns_to_go [B, K, 1], states [B, K, {c.state_inputs}], actions [B, K] and "
                             f"mask [B, K] with 1 <= K <= {c.context_steps}; got {tuple(returns_to_go.shape)}, "
                             f"{tuple(states.shape)}, {tuple(actions.shape)}, "
                             f"{None if mask is None else tuple(mask.shape)}")
        return torch.ones(b, k, dtype=torch.bool, device=actions.device) if mask is None else mask.bool()

    def forward(self, returns_to_go: torch.Tensor, states: torch.Tensor, actions: torch.Tensor,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        """[B, K, num_actions] logits of a_t at every step t; `mask` None: every step is real."""
        c = self.config
        mask = self._check(returns_to_go, states, actions, mask)
        b, k = actions.shape
        position = self.embed_position(torch.arange(c.context_steps - k, c.context_steps, device=actions.device))
        tokens = torch.stack([self.embed_return(returns_to_go),
                              self.embed_state((states - self.state_mean) / self.state_std),
                              self.embed_action(actions)], dim=2) + position[:, None]  # [B, K, 3, H]
        x = self.embed_dropout(self.embed_norm(tokens.reshape(b, TOKENS_PER_STEP * k, c.hidden)))
        x = self.blocks(x, mask=self._attention_mask(mask))
        return self.head(x[:, STATE_TOKEN::TOKENS_PER_STEP])  # the s_t tokens' outputs

    def _attention_mask(self, mask: torch.Tensor) -> torch.Tensor:
        """[B * heads, 3K, 3K] bool, True where a query (row) may NOT attend a key (column): later tokens,
        and padded tokens other than the query itself."""
        real = mask.repeat_interleave(TOKENS_PER_STEP, dim=1)  # [B, 3K]
        n = real.shape[1]
        index = torch.arange(n, device=mask.device)
        later = index[None, :] > index[:, None]                # [3K, 3K]
        padded = ~real[:, None, :] & (index[None, :] != index[:, None])  # [B, 3K, 3K]
        return (later | padded).repeat_interleave(self.config.heads, dim=0)

    @staticmethod
    def loss(logits: torch.Tensor, actions: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Mean cross-entropy of the actions taken [B, K] under logits [B, K, A], over real steps only."""
        if logits.shape[:-1] != actions.shape or (mask is not None and mask.shape != actions.shape):
            raise ValueError(f"logits {tuple(logits.shape)} must be actions {tuple(actions.shape)} + [A], and mask "
                             f"actions' shape")
        if mask is None:
            return F.cross_entropy(logits.flatten(0, 1), actions.flatten())
        mask = mask.bool()
        if not bool(mask.any()):
            raise ValueError("the mask has no real step")
        return F.cross_entropy(logits[mask], actions[mask])

    @torch.no_grad()
    def act(self, returns_to_go: torch.Tensor, states: torch.Tensor, actions: torch.Tensor,
            mask: torch.Tensor | None = None, *, legal: torch.Tensor | None = None) -> torch.Tensor:
        """[B] int64: the most likely action at each window's LAST step (call eval() first, to turn off
        dropout). That step's entry in `actions` is not read by its logits (any value will do); `legal`
        [B, A] bool, True where an action is allowed, sets the others' logits to -inf."""
        logits = self(returns_to_go, states, actions, mask)[:, -1]  # [B, A]
        if legal is not None:
            legal = legal.bool()
            if legal.shape != logits.shape or not bool(legal.any(dim=-1).all()):
                raise ValueError(f"legal must be [B, A] = {tuple(logits.shape)} with a legal action in every row; "
                                 f"got {tuple(legal.shape)}")
            logits = logits.masked_fill(~legal, float("-inf"))
        return logits.argmax(dim=-1)
