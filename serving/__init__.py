"""Serving: the BentoML service and its ranking."""
