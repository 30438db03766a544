"""Reading a dataset's files as text records, one per non-blank line, without losing any.

Structure decides only what cannot be read at all: bytes that do not decode, a missing required
column (a wrong separator shows up as one), a file that cannot be opened. Those raise
``SourceRejected`` naming the file. Everything else is a row's own problem: a line with missing or
extra fields, or malformed quoting, becomes a record with its ``problem`` set, for the suites to
route to quarantine."""

from __future__ import annotations

import codecs
import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

BLANKS = " \t"  # what a field or line may be padded with


class SourceRejected(ValueError):
    """A dataset file whose structure is broken: the dataset is refused as a whole."""

    def __init__(self, path: Path, table: str, problem: str, rows: int = 0) -> None:
        super().__init__(f"{Path(path).name}: {problem}")
        self.path = Path(path)
        self.table = table
        self.problem = problem
        self.rows = rows  # the file's data lines, all of them kept in quarantine with the file


@dataclass
class Records:
    """A file's data lines split into named fields (None where a line has no such field)."""

    file: str
    fields: pd.DataFrame
    line: np.ndarray  # 1-based line number of each record in its file
    problem: pd.Series  # None, or what is wrong with the line's layout

    @property
    def ok(self) -> pd.Series:
        return self.problem.isna()


def data_lines(data: bytes, header: bool) -> int:
    """How many data lines raw bytes hold (non-blank lines, less the header)."""
    lines = sum(1 for line in data.split(b"\n") if line.strip(BLANKS.encode()))
    return max(lines - int(header), 0)


def decode(path: Path, table: str, latin1: bool = False, header: bool = False) -> str:
    """A file as text: byte order mark dropped, UTF-8 (else latin-1 where the layout allows it, as
    GroupLens' older files are ISO-8859-1), CRLF made LF. A lone CR stays: it is no line break."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise SourceRejected(path, table, f"cannot be read ({exc.strerror or exc})") from exc
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8):]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        if not latin1:
            raise SourceRejected(path, table, f"bytes at offset {exc.start} are not UTF-8 text",
                                 data_lines(data, header)) from exc
        text = data.decode("latin-1")
    return text.replace("\r\n", "\n")


def _split_quoted(lines: pd.Series, sep: str) -> tuple[pd.Series, pd.Series]:
    """CSV fields of each line (quotes honoured; a line is one record), and which lines are malformed."""
    fields = lines.str.split(sep, regex=False)
    malformed = pd.Series(False, index=lines.index)
    for idx in lines.index[lines.str.contains('"', regex=False)]:
        try:
            fields[idx] = next(csv.reader([lines[idx]], delimiter=sep, strict=True))
        except (csv.Error, StopIteration):
            malformed[idx] = True
    return fields, malformed


def blank(lines: pd.Series) -> pd.Series:
    return lines.str.strip(BLANKS) == ""


def read_records(path: Path, table: str, names: list[str], sep: str | None, *, header: bool = False,
                 quoted: bool = False, latin1: bool = False, required: list[str] | None = None) -> Records:
    """One record per non-blank line of ``path``: fields split on ``sep`` (None: runs of whitespace),
    stripped, named ``names`` in order, or by the header line when ``header`` (then ``names`` are the
    columns wanted and ``required`` those that must be there)."""
    text = decode(path, table, latin1, header)
    lines = pd.Series(text.split("\n"), dtype=object)
    numbers = np.arange(1, len(lines) + 1)
    keep = (~blank(lines)).to_numpy()
    lines, numbers = lines[keep].reset_index(drop=True), numbers[keep]
    if header:
        if lines.empty:
            raise SourceRejected(path, table, "has no header line")
        head = next(csv.reader([lines[0]], delimiter=sep or ",")) if quoted else lines[0].split(sep)
        head = [h.strip() for h in head]
        missing = [c for c in (required or names) if c not in head]
        if missing:
            raise SourceRejected(path, table, f"missing required column(s) {', '.join(missing)} (the header has "
                                              f"{len(head)} column(s): {', '.join(head)[:200]}); a wrong separator "
                                              "shows up this way", len(lines) - 1)
        positions = {name: head.index(name) for name in names if name in head}
        width = len(head)
        lines, numbers = lines[1:].reset_index(drop=True), numbers[1:]
    else:
        positions = {name: i for i, name in enumerate(names)}
        width = len(names)
    if quoted:
        fields, malformed = _split_quoted(lines, sep or ",")
    else:
        # Only spaces and tabs are trimmed: other control characters are data, and a problem.
        fields = (lines.str.strip(BLANKS).str.split(sep, regex=False) if sep
                  else lines.str.strip(BLANKS).str.split(r"[ \t]+", regex=True))
        malformed = pd.Series(False, index=lines.index)
    counts = fields.str.len().fillna(0).astype(int)
    if len(lines) and (counts < width).mean() > 0.5:
        separator = "whitespace" if sep is None else repr(sep)
        raise SourceRejected(path, table, f"most lines have fewer than {width} fields separated by {separator} "
                                          f"(typically {int(counts.mode()[0])}): a wrong separator or a missing "
                                          "column", len(lines))
    problem = pd.Series(None, index=lines.index, dtype=object)
    problem[counts != width] = [f"{c} fields where the layout has {width}" for c in counts[counts != width]]
    problem[malformed] = "malformed quoting"
    out = pd.DataFrame(index=lines.index)
    for name, i in positions.items():
        column = fields.str[i].str.strip(BLANKS)
        out[name] = column.where(column.notna() & (column != ""), None).astype(object)  # empty is missing
    return Records(Path(path).name, out, numbers, problem)
