"""An int8 copy of a registered model for serving (``LONGVIEW_SERVING__QUANTIZE=true``): the sequence
networks' encoder ``torch.nn.Linear`` layers dynamically quantised (int8 weights, activations
quantised per call; torch.ao.quantization.quantize_dynamic), for inference only.

What is quantised, and what is not (measured on the 2-core AMD EPYC of the README, AVX2 without
AVX-512 or VNNI, torch's default x86 quantised engine, one torch thread, the production
architecture: dim 64, 2 blocks, 3,416 items):

- the encoder blocks' ``qkv``, ``out`` and feed-forward layers: the linear layers every request runs
  over its whole history (8 layers, 192 KiB of float32 weights, 48 KiB in int8);
- the long-term value head's MLP (``value_head.deep``), run on each of the policy's candidates where
  the data has real time: it adds ~0.06 ms to a policy request (4.4 ms float, 5.3 ms with the
  encoder in int8, 5.4 ms with the head too, on an ml-100k-shaped model), within the noise;
- not the item table (id embeddings plus projected content) of a catalogue this size: it is built
  once per model load and serves as the input embeddings and the output weights alike. Scoring one
  user against 3,417 rows took 20-28 us in float32, 49-56 us in int8 (a dynamically quantised Linear
  holding the table), 104 us in float16 and 112 us in bfloat16 (both emulated here): under 2% of a
  2 ms request, and int8 would make it slower. int8 draws level at ~30,000 items (229 against 219
  us) and wins from there (100,000 items: 2.8 ms against 0.7 ms), where the table no longer fits the
  caches. So from INT8_TABLE_FROM items the sequence model, quantised or not, scores against an
  Int8ItemTable (one scale per row), float or int8 encoder alike; the float table still embeds the
  histories;
- not ``content_projection``: it only builds that table, once per load, so int8 would add error to
  every item vector and save nothing per request;
- not ``context_projection`` nor the value head's ``wide`` term: one row of 5 to ~30 side inputs per
  request, where int8's fixed cost per call (~27 us) is three times the float layer's whole cost
  (~9 us); and SASRecNet.with_context reads the float layer's ``weight``, which a quantised layer
  does not have.

At this width the per-call cost of quantising the activations outweighs the int8 matmul's saving,
even in the encoder (a 64 x 192 layer on 200 rows: float 69 us, int8 85 us). So on this CPU the copy
is slower than the float model, not faster: `longview bench quantization` (training/
quantization_benchmark.py) on ml-1m-sasrec measured single-user slots under the engagement policy at
2.01 ms median float32 against 2.34 ms int8 (speedup 0.86), for an NDCG@10 difference of -0.00005
[-0.00052, +0.00039] (0.0633 both). Wider networks gain (a 256 x 768 layer on 2,000 rows: float
15.7 ms, int8 5.1 ms, one run), and CPUs with int8 dot-product instructions (VNNI, AMX) should too
(not measured here).

The copy scores, ranks, fills the policy's slots and lists like the float model, apart from the
numbers; the original is left untouched. It cannot be saved (``tensors()`` refuses): register the
float model and quantise at load."""

from __future__ import annotations

import copy
import warnings

import torch
from torch import nn

# Submodules of a SASRecNet whose Linear layers are quantised (see the module's docstring).
QUANTISED = ("blocks", "value_head.deep")

_int8_classes: dict[type, type] = {}


def quantized(packaged):
    """An int8 copy of ``packaged`` (a training/models/packaged.py PackagedModel, from this checkout
    or loaded from the registry as ``longview_recommender``): its sequence networks' encoder and
    value-head Linear layers dynamically quantised. A sequence model, or the engagement policy over
    one, comes back as a copy (the original keeps its float networks); anything with nothing to
    quantise (popularity, item-kNN, EASE, an already quantised copy) comes back as it is. Costs a
    deep copy of the networks (a few MB, tens of milliseconds): once per model load, not per
    request. RuntimeError where this torch build has no quantised engine."""
    model = getattr(packaged, "model", None)
    int8 = quantized_model(model)
    if int8 is model:
        return packaged
    clone = copy.copy(packaged)
    clone.model = int8
    # Lists the copy grows on its own (add_items appends new items): not the original's.
    for name in ("item_ids", "index", "config"):
        if hasattr(packaged, name):
            setattr(clone, name, copy.deepcopy(getattr(packaged, name)))
    return clone


def is_quantized(packaged_or_model) -> bool:
    """Whether this PackagedModel or model is an int8 copy made here."""
    model = getattr(packaged_or_model, "model", packaged_or_model)
    model = getattr(model, "base", None) or model
    return bool(getattr(model, "int8", False))


def quantized_model(model):
    """The model-level half of ``quantized``: a SequenceModel (duck-typed by its ``nets``, so the
    registry's copy of the code works too) or a policy wrapping one (its ``base``) as an int8 copy;
    any other model as it is."""
    if _is_sequence(model):
        return _sequence_copy(model)
    base = getattr(model, "base", None)
    if _is_sequence(base):
        policy = copy.copy(model)
        policy.base = _sequence_copy(base)
        if base is policy.base:  # the base was already int8
            return model
        # The policy's own state, where it changes: its exploration stream continues from where
        # the original's stands (the same draws), but the two no longer share it.
        if hasattr(model, "rng"):
            policy.rng = copy.deepcopy(model.rng)
        if hasattr(model, "weights"):
            policy.weights = dict(model.weights)
        return policy
    return model


def _is_sequence(model) -> bool:
    nets = getattr(model, "nets", None)
    return (isinstance(nets, list) and bool(nets) and all(isinstance(n, nn.Module) for n in nets)
            and hasattr(model, "score"))


def _sequence_copy(model):
    if getattr(model, "int8", False):
        return model
    # Everything but the cached item tables copied (the copy rebuilds them from its own networks,
    # in float: the same values); popularity, clock and options too, since add_items grows them.
    state = {k: v for k, v in model.__dict__.items() if k not in ("_tables", "_unit_tables", "_scorers", "_states")}
    clone = object.__new__(_int8_class(type(model)))
    clone.__dict__.update(copy.deepcopy(state))
    clone._tables = clone._unit_tables = clone._states = clone._scorers = None
    clone.nets = [quantize_network(net) for net in clone.nets]
    with torch.inference_mode():  # built now, at load, rather than by the first request
        clone._tables = [net.item_table() for net in clone.nets]
    return clone


def quantize_network(net: nn.Module) -> nn.Module:
    """``net`` (a SASRecNet; changed in place and returned) with the Linear layers under QUANTISED
    dynamically quantised to int8, in eval mode."""
    net.eval()
    spec = {name: torch.ao.quantization.default_dynamic_qconfig for name in QUANTISED
            if _submodule(net, name) is not None}
    if spec:
        with warnings.catch_warnings():  # torch.ao.quantization announces its move to torchao
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", UserWarning)
            try:
                torch.ao.quantization.quantize_dynamic(net, spec, dtype=torch.qint8, inplace=True)
            except (RuntimeError, NotImplementedError) as exc:  # e.g. a torch build without a quantised engine
                raise RuntimeError(f"int8 dynamic quantisation is not available here (torch {torch.__version__}, "
                                   f"quantised engine {torch.backends.quantized.engine!r}): {exc}") from exc
    return net.eval()


# From this many items up, SequenceModel scores against an Int8ItemTable (see the docstring above:
# int8 draws level with float32 at ~30,000 items on this CPU and wins from there).
INT8_TABLE_FROM = 30_000


class Int8ItemTable:
    """An item table (items x dim) for scoring only: its rows quantised to int8, each with its own
    scale (per-channel weights of a dynamically quantised Linear), a quarter of float32's bytes to
    stream per request. Over 1,000,000 items x 64 on one thread here: 10 ms against float32's 30 ms.
    ``scores(hidden)`` is ``hidden @ table.T`` to within the rounding of the rows and of ``hidden``
    (quantised per call); the float table still embeds the histories."""

    def __init__(self, table: torch.Tensor) -> None:
        rows, dim = table.shape
        linear = nn.Linear(dim, rows, bias=False)
        with torch.no_grad():
            linear.weight.copy_(table.detach().float())
        spec = {nn.Linear: torch.ao.quantization.per_channel_dynamic_qconfig}
        with warnings.catch_warnings():  # torch.ao.quantization announces its move to torchao
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", UserWarning)
            self.layer = torch.ao.quantization.quantize_dynamic(nn.Sequential(linear), spec, dtype=torch.qint8)[0]
        self.shape = (rows, dim)

    def scores(self, hidden: torch.Tensor) -> torch.Tensor:
        """(..., rows) scores for hidden states (..., dim)."""
        return self.layer(hidden.float())


def scoring_table(table: torch.Tensor, int8_from: int = INT8_TABLE_FROM) -> torch.Tensor | Int8ItemTable:
    """What to score a catalogue against: the float table, or from ``int8_from`` rows an Int8ItemTable."""
    return Int8ItemTable(table) if table.shape[0] >= int8_from else table


def quantized_linears(net: nn.Module) -> list[str]:
    """Names of the dynamically quantised int8 Linear layers in ``net``."""
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    return [name for name, module in net.named_modules() if isinstance(module, DynamicLinear)]


def _submodule(net: nn.Module, name: str) -> nn.Module | None:
    try:
        return net.get_submodule(name)
    except AttributeError:
        return None


def _refuse_tensors(self):
    raise TypeError("an int8 copy (training/models/quantize.py) is for inference only: save the float model "
                    "it was made from, and quantise it at load")


def _int8_class(cls: type) -> type:
    """``cls`` with ``int8`` set and saving refused (one subclass per class: the checkout's
    SequenceModel and the registry's copy of it are two)."""
    if cls not in _int8_classes:
        _int8_classes[cls] = type(f"Int8{cls.__name__}", (cls,), {
            "int8": True, "tensors": _refuse_tensors, "__module__": cls.__module__,
            "__doc__": f"{cls.__name__}, its encoder's Linear layers dynamically quantised to int8 "
                       f"(training/models/quantize.py); inference only."})
    return _int8_classes[cls]
