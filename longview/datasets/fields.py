"""Checks of a dataset's own field formats (what its layout promises, beyond the canonical suites),
collected per row as a problem text for the suites to route. Values that fail keep their raw text,
so quarantine shows what was received."""

from __future__ import annotations

import numpy as np
import pandas as pd

from longview.datasets.source import Records

MAX_UNSIGNED = 2**63 - 1
LAST_UNIX_SECOND = 253_402_300_799  # 9999-12-31T23:59:59Z: later "Unix times" are not times


class Problems:
    """What is wrong with each row ("; "-joined), None where nothing is. A row whose layout is broken
    (wrong field count, bad quoting) gets no field checks: its fields cannot be trusted to be what
    their names say."""

    def __init__(self, records: Records) -> None:
        self.text = records.problem.copy()
        self.layout_ok = records.ok.to_numpy()

    def add(self, mask: pd.Series | np.ndarray, message: str) -> None:
        mask = np.asarray(mask, dtype=bool) & self.layout_ok
        if not mask.any():
            return
        current = self.text[mask]
        self.text[mask] = current.where(current.isna(), current + "; " + message).fillna(message)

    @property
    def clean(self) -> np.ndarray:
        return self.text.isna().to_numpy()


def unsigned_ids(text: pd.Series, what: str, problems: Problems, prefix: str) -> pd.Series:
    """``prefix`` + unsigned integer ids below 2^63, normalised ("007" is 7); a missing or any other
    value is a problem (a text id, a negative or fractional number, one too large for 64 bits) and
    stays as received."""
    digits = text.str.fullmatch(r"\d+").eq(True)
    trimmed = text.where(digits).str.lstrip("0").replace("", "0")
    # Equal-length digit strings compare as their numbers do.
    fits = trimmed.str.len().lt(19) | (trimmed.str.len().eq(19) & trimmed.le(str(MAX_UNSIGNED)))
    valid = digits & fits.eq(True)
    problems.add(text.isna(), f"{what} is missing")
    problems.add(text.notna() & ~valid, f"{what} is not an unsigned integer below 2^63")
    return (prefix + trimmed).where(valid, text)


def whole_numbers(text: pd.Series, what: str, low: int, high: int, problems: Problems,
                  required: bool = True) -> pd.Series:
    """Whole numbers in [low, high], written as ``12`` or ``12.0``; float, NaN where not one."""
    whole = text.str.fullmatch(r"\d{1,15}(\.0*)?").eq(True)
    number = pd.to_numeric(text.where(whole), errors="coerce")
    valid = whole & number.between(low, high)
    if required:
        problems.add(text.isna(), f"{what} is missing")
    problems.add(text.notna() & ~valid, f"{what} is not a whole number from {low} to {high}")
    return number.where(valid)


NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"


def finite_numbers(text: pd.Series, what: str, problems: Problems) -> pd.Series:
    """Required finite numbers written plainly ("4", "3.5", "1e0"; not "nan", "inf", "1_000" or a
    number wrapped in control characters, which a float parser would quietly accept); the range is
    the suite's to check. Float, NaN where not one."""
    plain = text.str.fullmatch(NUMBER).eq(True)
    number = pd.to_numeric(text.where(plain), errors="coerce")
    valid = plain.to_numpy() & np.isfinite(number.to_numpy(dtype=float))
    problems.add(text.isna(), f"{what} is missing")
    problems.add(text.notna() & ~valid, f"{what} is not a finite number")
    return number.where(valid)


def unix_seconds(text: pd.Series, what: str, problems: Problems) -> np.ndarray:
    """Whole Unix seconds from 0 to the end of year 9999; int64 array, -1 where not one."""
    number = whole_numbers(text, what, 0, LAST_UNIX_SECOND, problems)
    return number.fillna(-1).astype("int64").to_numpy()


def number_text(values: np.ndarray | pd.Series) -> np.ndarray:
    """Numbers as short text ("4", "3.5"); NaN becomes None."""
    codes, uniques = pd.factorize(np.asarray(values, dtype=float))
    labels = np.array([format(float(u), "g") for u in uniques] + [None], dtype=object)
    return labels[codes]  # code -1 (NaN) picks the trailing None
