"""The SASRec-style network: a causal transformer over a user's item sequence whose item
representations are id embeddings fused with projected content (genres, text embeddings), tied
between input and output so the same vector both describes an item in a history and scores it."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .value_head import ValueHead


def residual_dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Dropout with a mask drawn as bytes: on the CPU, torch's Bernoulli draws cost more than the
    block's matmuls. ``p`` is rounded to a multiple of 1/256."""
    if not training or p <= 0.0:
        return x
    cut = round(p * 256)
    keep = torch.randint_like(x, 256, dtype=torch.uint8) >= cut
    return x * keep * (256.0 / (256 - cut))


class CausalBlock(nn.Module):
    """Pre-norm self-attention (scaled_dot_product_attention) and a feed-forward layer."""

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"the embedding size {dim} is not a multiple of the head count {heads}")
        self.heads, self.dropout = heads, dropout
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        # SASRec's point-wise feed-forward keeps the width (no 4x expansion); dropout sits on the
        # residual branches only: on the CPU, drawing dropout masks costs more than the matmuls.
        self.ff = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, dim))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """``mask``: which positions each query may attend to; None where nothing is padding (plain
        causal attention, which torch computes without building and converting a mask)."""
        b, n, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=mask is None)
        x = x + residual_dropout(self.out(attended.transpose(1, 2).reshape(b, n, d)), self.dropout, self.training)
        return x + residual_dropout(self.ff(self.norm2(x)), self.dropout, self.training)

    def last(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """forward()'s output at the last position only (b x 1 x dim), for inference: every
        position's keys and values, but one query, one output projection and one feed-forward row."""
        b, n, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        # The last query sees every position (all of them, without padding: no mask).
        attended = F.scaled_dot_product_attention(q[:, :, -1:], k, v, attn_mask=None if mask is None else mask[..., -1:, :])
        x = x[:, -1:] + self.out(attended.transpose(1, 2).reshape(b, 1, d))
        return x + self.ff(self.norm2(x))

    def appended(self, prefix: torch.Tensor, last: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Inference on one history (1 x n x dim, ``mask`` its causal mask) followed by each of m
        alternative last items (m x dim): each last item attends to the shared history and itself."""
        n, d, h = prefix.shape[1], prefix.shape[2], self.heads
        m = last.shape[0]
        q, k, v = self.qkv(self.norm1(last)).view(m, 3, h, d // h).permute(1, 0, 2, 3)[:, :, :, None]  # m x h x 1 x d/h
        if n:
            qp, kp, vp = self.qkv(self.norm1(prefix)).view(1, n, 3, h, d // h).permute(2, 0, 3, 1, 4)
            k = torch.cat([kp.expand(m, h, n, d // h), k], dim=2)
            v = torch.cat([vp.expand(m, h, n, d // h), v], dim=2)
            prefix = prefix + self.out(F.scaled_dot_product_attention(qp, kp, vp, attn_mask=mask).transpose(1, 2).reshape(1, n, d))
            prefix = prefix + self.ff(self.norm2(prefix))
        last = last + self.out(F.scaled_dot_product_attention(q, k, v).reshape(m, d))
        return prefix, last + self.ff(self.norm2(last))


class SASRecNet(nn.Module):
    """Item index 0 is padding; sequences are left-padded (most recent item last)."""

    def __init__(self, n_items: int, max_len: int, dim: int = 64, blocks: int = 2, heads: int = 1,
                 dropout: float = 0.2, content: torch.Tensor | None = None, context_features: int = 0,
                 value_features: int = 0, value_bins: int = 0) -> None:
        super().__init__()
        self.n_items, self.max_len, self.dim = n_items, max_len, dim
        self.item_embedding = nn.Embedding(n_items + 1, dim, padding_idx=0)
        nn.init.normal_(self.item_embedding.weight, std=dim ** -0.5)
        with torch.no_grad():
            self.item_embedding.weight[0].zero_()
        # Positions count back from the most recent item, so cropping padding changes nothing.
        self.position_embedding = nn.Embedding(max_len, dim)
        if content is not None:
            if content.shape[0] != n_items + 1:
                raise ValueError(f"content has {content.shape[0]} rows, expected {n_items + 1} (padding first)")
            self.register_buffer("content", content.float())
            self.content_projection: nn.Module | None = nn.Linear(content.shape[1], dim, bias=False)
        else:
            self.content = None
            self.content_projection = None
        # Request-time side inputs (training/models/base.py request_context), projected and added to
        # the hidden state that scores the next item; without bias, so a missing context adds nothing.
        self.context_projection = nn.Linear(context_features, dim, bias=False) if context_features else None
        # The long-term value head (value_head.py) reads the encoder's state before the context is added.
        self.value_head = ValueHead(dim, value_features, value_bins) if value_bins else None
        self.blocks = nn.ModuleList(CausalBlock(dim, heads, dropout) for _ in range(blocks))
        self.norm = nn.LayerNorm(dim)
        self.dropout = dropout

    def item_table(self) -> torch.Tensor:
        """(n_items + 1) x dim: what represents and scores each item."""
        table = self.item_embedding.weight
        if self.content_projection is not None:
            table = table + self.content_projection(self.content)
        return table

    def grow(self, content: torch.Tensor) -> None:
        """Append items the network never trained on, one row of content each: with a zero id
        embedding, their content projection alone represents and scores them."""
        if self.content is None or self.content_projection is None:
            raise ValueError("the network was trained without item content: it cannot represent new items")
        if content.ndim != 2 or content.shape[1] != self.content.shape[1]:
            raise ValueError(f"new items need {self.content.shape[1]} content features, got shape {tuple(content.shape)}")
        old = self.item_embedding.weight.detach()
        grown = nn.Embedding(old.shape[0] + content.shape[0], self.dim, padding_idx=0)
        with torch.no_grad():
            grown.weight.zero_()
            grown.weight[:old.shape[0]] = old
        self.item_embedding = grown
        self.content = torch.cat([self.content, content.float()])
        self.n_items += int(content.shape[0])

    def encode(self, sequences: torch.Tensor, table: torch.Tensor | None = None) -> torch.Tensor:
        """batch x length x dim hidden states; position t has seen items up to t only."""
        x, mask = self._embedded(sequences, table)
        for block in self.blocks:
            x = block(x, mask)
        return self.norm(x)

    def encode_last(self, sequences: torch.Tensor, table: torch.Tensor | None = None) -> torch.Tensor:
        """batch x dim: encode()'s state at the last position, which is all scoring reads, without
        computing the last block's other positions (inference only: no dropout)."""
        x, mask = self._embedded(sequences, table)
        *inner, final = self.blocks
        for block in inner:
            x = block(x, mask)
        return self.norm(final.last(x, mask))[:, 0]

    def _embedded(self, sequences: torch.Tensor, table: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The blocks' input (items plus positions, padding zeroed) and the attention mask (None
        where nothing is padding: a served user's history, or a batch of equal lengths)."""
        table = self.item_table() if table is None else table
        n = sequences.shape[1]
        if n > self.max_len:
            raise ValueError(f"sequences of {n} items are longer than the model's {self.max_len}")
        valid = sequences > 0
        positions = torch.arange(n - 1, -1, -1, device=sequences.device)
        x = table[sequences] * math.sqrt(self.dim) + self.position_embedding(positions)
        x = residual_dropout(x, self.dropout, self.training)
        if bool(valid.all()):
            return x, None
        x = x * valid.unsqueeze(-1)
        causal = torch.ones(n, n, dtype=torch.bool, device=sequences.device).tril()
        # A query sees earlier real items, and itself (so a padding row never sees nothing).
        mask = (causal & valid[:, None, :]) | torch.eye(n, dtype=torch.bool, device=sequences.device)
        return x, mask.unsqueeze(1)

    def encode_appended(self, history: torch.Tensor, candidates: torch.Tensor,
                        table: torch.Tensor | None = None) -> torch.Tensor:
        """m x dim: the last hidden state of ``history`` (item indices, no padding, shorter than
        max_len) followed by each of the m ``candidates``, as encode() gives it, at about the cost of
        encoding the history once: under causal attention the history's states do not depend on what
        follows, and positions count back from the end, so they are the same for every candidate."""
        table = self.item_table() if table is None else table
        n = int(history.shape[0])
        if n >= self.max_len:
            raise ValueError(f"a history of {n} items leaves no room for a candidate within {self.max_len}")
        positions = torch.arange(n, -1, -1, device=history.device)
        scale = math.sqrt(self.dim)
        prefix = (table[history] * scale + self.position_embedding(positions[:n]))[None]
        last = table[candidates] * scale + self.position_embedding(positions[n:])
        mask = torch.ones(n, n, dtype=torch.bool, device=history.device).tril()[None, None]
        for block in self.blocks:
            prefix, last = block.appended(prefix, last, mask)
        return self.norm(last)

    def logits(self, hidden: torch.Tensor, table=None) -> torch.Tensor:
        """Scores of every item for hidden states (..., dim); padding can never win. ``table``: the
        item table, or a scoring-only copy of it with a ``scores`` method (quantize.Int8ItemTable)."""
        table = self.item_table() if table is None else table
        scores = table.scores(hidden) if hasattr(table, "scores") else hidden @ table.T
        scores[..., 0] = float("-inf")
        return scores

    def with_context(self, hidden: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor:
        """Hidden states (..., dim) with the request's side inputs (..., context_features) added."""
        if context is None or self.context_projection is None:
            return hidden
        return hidden + self.context_projection(context.to(self.context_projection.weight.dtype))

    def forward(self, sequences: torch.Tensor, context: torch.Tensor | None = None,
                value_features: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Hidden states, the item table and, with ``value_features`` (k x features), the value
        head's hazard logits after the last item of the batch's last k rows: what a training step
        needs (and what DistributedDataParallel must see pass through forward to synchronise
        gradients)."""
        table = self.item_table()
        encoded = self.encode(sequences, table)
        value = None
        if value_features is not None and self.value_head is not None:
            value = self.value_head(encoded[len(encoded) - len(value_features):, -1], value_features)
        return self.with_context(encoded, context), table, value

    def last_hidden(self, sequences: torch.Tensor, table: torch.Tensor | None = None,
                    context: torch.Tensor | None = None) -> torch.Tensor:
        return self.with_context(self.encode_last(sequences, table), context)
