"""A gate rule's verdict, shared by the rules' modules (gate/promotion.py, gate/retention.py)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Verdict:
    rule: str
    passed: bool
    detail: str


def one_line(exc: BaseException) -> str:
    """An exception as one short line for a verdict: its type and its first 300 characters."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:300]}"
