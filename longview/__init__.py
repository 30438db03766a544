"""Longview: an MLOps platform for recommenders that optimise long-term engagement."""

__version__ = "0.1.0"
