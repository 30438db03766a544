"""Training: point-in-time training sets, the torch model, evaluation, registry and promotion."""
