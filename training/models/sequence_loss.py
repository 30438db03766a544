"""Loss kernels of the sequence model: cross-entropy over the whole catalogue (sliced, with a
hand-written backward, optionally torch.compile'd and with bfloat16 matmuls) or against sampled
negatives with logQ correction, and the choice of training precision."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

LOSS_CHUNK = 2048  # positions per slice of the full softmax (measured fastest on ml-1m-sasrec's 3,416 items)
LOSS_PAD = 256  # positions are padded to a multiple of this (LOSS_CHUNK is one)


def bfloat16_native() -> bool:
    """Whether the CPU computes bfloat16 matmuls natively (AVX512-BF16 or AMX, through oneDNN)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a torch built without oneDNN
        return False


def training_dtype(precision: str) -> torch.dtype:
    if precision == "bfloat16" or (precision == "auto" and bfloat16_native()):
        return torch.bfloat16
    return torch.float32


def softmax_gradient(logits: torch.Tensor, targets: torch.Tensor, log_n: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's cross-entropy, and its gradient with respect to the logits divided by
    n = exp(log_n): (softmax - one-hot) / n, in place of autograd's several passes."""
    top = torch.logsumexp(logits, 1)
    losses = top - logits.gather(1, targets[:, None]).squeeze(1)
    gradient = torch.exp(logits - (top + log_n)[:, None])
    gradient[torch.arange(len(targets)), targets] -= torch.exp(-log_n)
    return losses, gradient


_compiled: dict[str, object] = {}


def softmax_kernel(compiled: bool):
    """softmax_gradient, fused by torch.compile into one pass over each slice (with the bfloat16
    matmuls, ml-1m-sasrec's benchmark went from 338 to 386-444 sequences/s) or eager where compiling is off or fails (no C++
    compiler)."""
    if not compiled or _compiled.get("failed"):
        return softmax_gradient
    if "kernel" not in _compiled:
        _compiled["kernel"] = torch.compile(softmax_gradient, dynamic=True)
    return _compiled["kernel"]


def full_softmax_loss(hidden: torch.Tensor, targets: torch.Tensor, table: torch.Tensor,
                      compiled: bool = False, matmul_dtype: torch.dtype = torch.float32,
                      extra: torch.Tensor | None = None) -> torch.Tensor:
    """Mean cross-entropy over the whole catalogue (padding, row 0, excluded). The logits and their
    gradient are built a slice at a time and freed; the gradients reach the network through one
    backward call at the end, together with ``extra``'s (another task's loss on the same graph)."""
    # ``matmul_dtype`` bfloat16: the two thirds of the work that are matmuls run in bfloat16; the
    # softmax and the accumulated item gradient stay float32.
    n = len(targets)
    # Rows padded to a multiple of LOSS_PAD: few distinct matmul shapes, since oneDNN caches a
    # primitive per shape (without this, the ml-1m-sasrec benchmark's peak memory reached 11.7 GB).
    rows = -(-n // LOSS_PAD) * LOSS_PAD
    hid = torch.zeros(rows, hidden.shape[1], dtype=matmul_dtype)
    hid[:n] = hidden.detach()
    labels = torch.zeros(rows, dtype=torch.long)
    labels[:n] = targets - 1  # padding rows point at item 1; their loss and gradient are dropped
    items = table.detach()[1:].to(matmul_dtype)
    grad_hidden = torch.empty_like(hid)
    grad_items = torch.zeros_like(items, dtype=torch.float32)
    kernel, total = softmax_kernel(compiled), 0.0
    log_n = torch.tensor(math.log(n))  # a tensor: a float would recompile for every batch size
    for start in range(0, rows, LOSS_CHUNK):
        h = hid[start:start + LOSS_CHUNK]
        logits, chunk_labels = (h @ items.T).float(), labels[start:start + LOSS_CHUNK]
        try:
            losses, gradient = kernel(logits, chunk_labels, log_n)
        except Exception:  # torch.compile could not build its kernel here: eager gives the same numbers
            if kernel is softmax_gradient:
                raise
            _compiled["failed"] = True
            kernel = softmax_gradient
            losses, gradient = kernel(logits, chunk_labels, log_n)
        real = max(0, min(len(h), n - start))
        total += float(losses[:real].sum()) / n
        gradient[real:] = 0.0
        gradient = gradient.to(matmul_dtype)
        torch.mm(gradient, items, out=grad_hidden[start:start + LOSS_CHUNK])
        grad_items += (gradient.T @ h).float()
    grad_table = torch.cat([torch.zeros_like(items[:1]), grad_items])
    outputs, grads = [hidden, table], [grad_hidden[:n].to(hidden.dtype), grad_table.to(table.dtype)]
    if extra is not None:
        outputs.append(extra)
        grads.append(torch.ones_like(extra))
    torch.autograd.backward(outputs, grads)
    return torch.tensor(total)


def sampled_softmax_loss(hidden: torch.Tensor, targets: torch.Tensor, table: torch.Tensor, log_q: torch.Tensor,
                         negatives: int, generator: torch.Generator, extra: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy against ``negatives`` items shared by the batch, drawn in proportion to
    popularity; subtracting log q (the sampling log-probability) keeps the estimate unbiased."""
    drawn = torch.multinomial(log_q.exp(), negatives, replacement=True, generator=generator)
    positive = (hidden * table[targets]).sum(-1, keepdim=True) - log_q[targets].unsqueeze(1)
    negative = hidden @ table[drawn].T - log_q[drawn]
    negative = negative.masked_fill(drawn[None, :] == targets[:, None], float("-inf"))
    loss = F.cross_entropy(torch.cat([positive, negative], dim=1), torch.zeros(len(targets), dtype=torch.long))
    (loss if extra is None else loss + extra).backward()
    return loss.detach()
