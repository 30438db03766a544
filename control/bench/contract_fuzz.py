"""The data contract under fire: a property-based check of `longview data prepare` on real data.

Each example takes a slice (at most 2,000 rows) of a shared real dataset, writes it in one of the
loaders' layouts (MovieLens 100K, the ``::`` layout of 1M/10M, the CSV layout of 20M and later, the
SASRec sequences, Instacart), corrupts random cells and lines in random ways, runs the loader and
validation in-process (``prepare_dataset``) and checks what the contract promises:

- no exception escapes but ``DatasetRejected``, and that one only for a broken structure;
- rows are conserved: every table's ``received == accepted + quarantined``, and the events table
  received every data row of its file;
- every uncorrupted row is accepted, every corrupted one quarantined (a rating of a movie whose own
  row was quarantined goes with it, as "item not in catalogue"; of a repeated row exactly one copy);
- a broken structure (undecodable bytes, a missing column, a wrong separator) rejects the dataset
  with a message naming the file, and keeps the file in quarantine byte for byte.

The tests run about 50 examples; ``longview bench contract --examples N`` runs more and says how many
it tried of each kind. The distribution checks (a broken feed) are table-level and tested on their
own; here they are off, so that a slice's natural skew is not mistaken for corruption.
"""

from __future__ import annotations

import shutil
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from control.bench.contract_layouts import LAYOUTS, SourceFile, serialise, write_layout
from longview.settings import Settings, get_settings

MAX_ROWS = 2_000
CONTROL = [chr(c) for c in (*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F)]
MARKUP = "<script>alert(1)</script>"
# Which corruptions make a cell of each kind invalid (a cell kind not listed here is not checked by
# the contract, e.g. 100K's IMDb link, and is never corrupted).
CELL_KINDS = {
    "id": ["text", "empty", "huge", "negative", "control", "markup", "quote"],
    "number": ["text", "empty", "huge", "negative", "control", "markup", "quote"],  # rating
    "time": ["text", "empty", "huge", "negative", "control", "markup", "quote"],
    "count": ["text", "empty", "huge", "negative", "control", "markup", "quote"],  # Instacart whole numbers
    "days": ["text", "huge", "negative", "control", "markup", "quote"],  # empty is a first order's
    "flag": ["text", "empty", "huge", "negative", "control", "markup", "quote"],
    "date": ["text", "huge", "negative", "control", "markup", "quote"],  # 100K release date, optional
    "code": ["text", "huge", "negative", "control", "markup", "quote"],  # 1M occupation code, optional
    "title": ["empty", "huge", "control", "markup"],
    "tag": ["empty", "huge", "control", "markup"],
    "genres": ["huge", "control", "markup"],
    "occupation": ["huge", "control", "markup"],
    "gender": ["text", "huge", "negative", "control", "markup"],
    "age": ["text", "huge", "negative", "control", "markup"],
    "zip": ["huge", "negative", "control", "markup"],
}
LINE_KINDS = ["truncate", "separator", "repeat"]
STRUCTURE_KINDS = ["drop_column", "wrong_separator", "undecodable"]


class ContractViolation(AssertionError):
    """What the loaders and validation did differs from what the contract promises."""


@dataclass
class Line:
    cells: list[str]  # serialised cells
    corrupted: int = 0  # rows of this line that are corrupted (a SASRec line holds many)
    repeat: bool = False  # a verbatim copy of the line before it
    item: str | None = None  # the movie id the line names (events)
    key: str | None = None  # the id the line defines (a catalogue row), as written originally


@dataclass
class Example:
    dataset: str
    files: list[SourceFile] = field(repr=False)
    lines: dict[str, list[Line]] = field(default_factory=dict, repr=False)
    raw: dict[str, bytes] = field(default_factory=dict, repr=False)
    kinds: Counter = field(default_factory=Counter)
    structure: tuple[str, str] | None = None  # (kind, file name)
    crlf: bool = False
    bom: bool = False

    def __repr__(self) -> str:  # the files are long: name the layout, rows and corruptions only
        rows = {name: len(lines) for name, lines in self.lines.items()}
        return f"Example({self.dataset}, rows {rows}, kinds {dict(self.kinds)}, structure {self.structure})"

    def _repr_pretty_(self, printer, cycle) -> None:  # what Hypothesis prints for a failing example
        printer.text(repr(self))


# ------------------------------------------------------------------ corruption

def _bad_value(kind: str, draw) -> str:
    if kind == "text":
        return draw(st.sampled_from(["abc", "x1", "1a", "NaN", "nan", "one", "1_000", "0x1F"]))
    if kind == "empty":
        return ""
    if kind == "huge":  # past every length limit (titles 512) and every number's range
        return "9" * draw(st.integers(600, 700))
    if kind == "negative":
        return "-" + str(draw(st.integers(1, 10**6)))
    raise ValueError(kind)


def _corrupt_cell(cell: str, kind: str, source: SourceFile, draw) -> str:
    if kind in ("text", "empty", "huge", "negative"):
        return serialise(_bad_value(kind, draw), source)
    if kind == "control":
        at = draw(st.integers(0, len(cell)))
        return cell[:at] + draw(st.sampled_from(CONTROL)) + cell[at:]
    if kind == "markup":
        return cell + MARKUP if draw(st.booleans()) else MARKUP + cell
    if kind == "quote":
        return '"' + cell  # unbalanced: malformed quoting in CSV, not a number elsewhere
    raise ValueError(kind)


def _truncate(cells: list[str], sep: str, draw) -> str:
    """The line cut inside its first fields: at least one field is lost, at least one character stays."""
    text = sep.join(cells)
    last = text.rfind(sep)
    return text[: draw(st.integers(1, max(last, 1)))]


@st.composite
def examples(draw, data_dir: Path, max_rows: int = 400, structure_share: float = 0.15) -> Example:
    """A slice of one layout with random row-level corruptions, sometimes a structural one."""
    dataset = draw(st.sampled_from(sorted(LAYOUTS)))
    n = draw(st.integers(20, min(max_rows, MAX_ROWS)))
    files = LAYOUTS[dataset](data_dir, draw(st.integers(0, 10**6)), n)
    example = Example(dataset, files, crlf=draw(st.booleans()), bom=draw(st.booleans()))
    movies = next((set(r[f.key_column] for r in f.rows) for f in files if f.table == "items"), set())
    for source in files:
        lines = [Line([serialise(v, source) for v in row],
                      item=row[source.item_column] if source.item_column is not None else None,
                      key=row[source.key_column] if source.key_column is not None else None) for row in source.rows]
        budget = draw(st.integers(0, max(len(lines) // 10, 1)))
        targets = draw(st.lists(st.integers(0, len(lines) - 1), min_size=budget, max_size=budget, unique=True)) \
            if lines else []
        repeats = []
        for index in targets:
            line = lines[index]
            column = draw(st.sampled_from([i for i, k in enumerate(source.kinds) if k and i < len(line.cells)]))
            options = [k for k in CELL_KINDS[source.kinds[column]] if not (source.tokens and k == "empty")]
            if source.quoted and "quote" not in options:
                options.append("quote")  # an unbalanced quote in a CSV cell: malformed quoting
            if not source.tokens:
                options += ["truncate", "separator"] + (["repeat"] if source.repeatable else [])
                if source.item_column is not None and movies:
                    options.append("unknown_id")
            kind = draw(st.sampled_from(options))
            example.kinds[kind] += 1
            if kind == "repeat":
                repeats.append(index)
                continue
            line.corrupted += 1
            if kind == "truncate":
                line.cells = [_truncate(line.cells, source.sep, draw)]
            elif kind == "separator":
                line.cells[column] = line.cells[column] + source.sep + "x"
            elif kind == "unknown_id":
                line.cells[source.item_column] = str(draw(st.integers(10**7, 10**9)))
            else:
                line.cells[column] = _corrupt_cell(line.cells[column], kind, source, draw)
        for index in sorted(repeats, reverse=True):  # a verbatim copy right after the original
            lines.insert(index + 1, Line(list(lines[index].cells), repeat=True, item=lines[index].item,
                                         key=lines[index].key))
        example.lines[source.name] = lines
    if draw(st.integers(0, 99)) >= 100 * (1 - structure_share):  # small draws (and shrinking) keep the structure
        source = draw(st.sampled_from(files))
        options = ["wrong_separator"] + (["drop_column"] if source.header else []) + \
            (["undecodable"] if source.utf8_only else [])
        example.structure = (draw(st.sampled_from(options)), source.name)
        example.kinds[example.structure[0]] += 1
    for source in files:
        example.raw[source.name] = _render(example, source, draw)
    return example


def _render(example: Example, source: SourceFile, draw) -> bytes:
    newline = "\r\n" if example.crlf else "\n"
    lines = [source.sep.join(line.cells) for line in example.lines[source.name]]
    if source.header:
        lines.insert(0, source.sep.join(source.header))
    kind = example.structure[0] if example.structure and example.structure[1] == source.name else None
    if kind == "wrong_separator":
        lines = [line.replace(source.sep, ";") for line in lines]
    elif kind == "drop_column":
        dropped = draw(st.sampled_from([i for i, k in enumerate(source.kinds) if k]))
        lines[0] = source.sep.join("dropped" if i == dropped else h for i, h in enumerate(source.header))
    text = newline.join(lines) + (newline if draw(st.booleans()) else "")  # a last line without its newline
    data = ("\ufeff" if example.bom and source.encoding == "utf-8" else "").encode() + text.encode(source.encoding)
    if kind == "undecodable":
        at = draw(st.integers(0, len(data)))
        data = data[:at] + b"\xff\xfe" + data[at:]
    return data


# ------------------------------------------------------------------ the check

def _expected(example: Example, source: SourceFile, quarantined_movies: set[str]) -> Counter:
    """Per line number, how many of its rows the contract sends to quarantine."""
    first = 1 + int(source.header is not None)
    expected: Counter = Counter()
    lines = example.lines[source.name]
    for n, line in enumerate(lines):
        number = first + n
        if line.corrupted:
            expected[number] += line.corrupted
        elif source.item_column is not None and line.item in quarantined_movies:
            expected[number] += 1  # its movie's own row was quarantined: an unknown item
        elif line.repeat:
            # The copy sits right after the original: a first-wins table drops the copy, an upsert the original.
            expected[number if source.keep == "first" else number - 1] += 1
    return expected


def _quarantined_lines(settings: Settings, table: str) -> tuple[Counter, list[str]]:
    counts: Counter = Counter()
    reasons: list[str] = []
    for path in sorted(settings.quarantine_dir.glob(f"{table}-*.parquet")):
        rows = pd.read_parquet(path, columns=["source_line", "reason"])
        counts.update(int(n) for n in rows["source_line"])
        reasons += rows["reason"].tolist()
    return counts, reasons


def _fail(example: Example, what: str) -> ContractViolation:
    structure = f", structure {example.structure}" if example.structure else ""
    return ContractViolation(f"{example.dataset} (kinds {dict(example.kinds)}{structure}): {what}")


def reset_store(settings: Settings) -> None:
    """Empty the store and quarantine of a data home, keeping its GX project (slow to create)."""
    uncommitted = settings.gx_dir / "gx" / "uncommitted"
    for folder in (settings.events_dir, settings.catalogue_path.parent, settings.quarantine_dir, settings.reports_dir,
                   uncommitted / "validations", uncommitted / "data_docs"):
        shutil.rmtree(folder, ignore_errors=True)
    settings.ensure_dirs()


def check(example: Example, settings: Settings, folder: Path) -> None:
    """Write the example, prepare it into ``settings``' data home, and check the contract."""
    from control.pipeline import DatasetRejected, prepare_dataset

    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for name, data in example.raw.items():
        (folder / name).write_bytes(data)
    reset_store(settings)
    try:
        summary, rejected = prepare_dataset(settings, example.dataset, folder), None
    except DatasetRejected as exc:
        summary, rejected = exc.summary, exc
    except Exception as exc:  # anything else escaping is a violation, whatever it is
        raise _fail(example, f"{type(exc).__name__} escaped: {exc}") from exc
    tables = {"events": summary, **summary["tables"]}
    for table, counts in tables.items():
        if counts["received"] != counts["accepted"] + counts["quarantined"]:
            raise _fail(example, f"{table}: received {counts['received']} != accepted {counts['accepted']} + "
                                 f"quarantined {counts['quarantined']}")
    if example.structure:
        if rejected is None:
            raise _fail(example, "a broken structure was not rejected")
        kind, name = example.structure
        if kind != "wrong_separator" or not next(f for f in example.files if f.name == name).tokens:
            if name not in str(rejected):
                raise _fail(example, f"the rejection does not name {name}: {rejected}")
            kept = list(settings.quarantine_dir.glob("*.unreadable*"))
            if not any(p.read_bytes() == example.raw[name] for p in kept):
                raise _fail(example, f"{name} is not kept byte for byte in quarantine")
        return
    if rejected is not None:
        raise _fail(example, f"rejected without a structural break: {rejected}")
    _check_rows(example, settings, tables)


def _check_rows(example: Example, settings: Settings, tables: dict) -> None:
    quarantined_movies: set[str] = set()
    for source in example.files:  # catalogues first: ratings of their quarantined movies follow them
        if source.table != "items":
            continue
        got, _ = _quarantined_lines(settings, "items")
        first = 1 + int(source.header is not None)
        lines = list(enumerate(example.lines[source.name]))
        accepted = {line.key for n, line in lines if not got[first + n]}
        quarantined_movies = {line.key for n, line in lines if got[first + n]} - accepted
    for source in example.files:
        lines = example.lines[source.name]
        received = sum(len(line.cells) for line in lines) if source.tokens else len(lines)
        if tables[source.table]["received"] != received:
            raise _fail(example, f"{source.name}: received {tables[source.table]['received']} of {received} rows")
        expected = _expected(example, source, quarantined_movies)
        got, reasons = _quarantined_lines(settings, source.table)
        if got != expected:
            missing, extra = expected - got, got - expected
            first = 1 + int(source.header is not None)
            shown = {n: source.sep.join(lines[n - first].cells)[:120] for n in sorted(missing | extra)[:4]}
            raise _fail(example, f"{source.name}: corrupted rows accepted at lines {sorted(missing)[:10]}, clean "
                                 f"rows quarantined at lines {sorted(extra)[:10]} ({shown!r}; reasons: "
                                 f"{sorted(set(reasons))[:5]})")
        if any(not r for r in reasons):
            raise _fail(example, f"{source.name}: a quarantined row without a reason")


# ------------------------------------------------------------------ running many

def contract_settings(data_dir: Path, home: Path) -> Settings:
    return get_settings(home=home, data_dir=data_dir, min_rows_for_distribution=10**9)


def run(data_dir: Path, root: Path, examples_wanted: int, max_rows: int = MAX_ROWS, seed: int | None = None,
        progress=None) -> dict:
    """Run ``examples_wanted`` examples; returns how many were tried, of which kinds and layouts, and
    how long it took. Raises the first ContractViolation (after Hypothesis shrank it)."""
    from hypothesis import seed as fixed_seed

    settings = contract_settings(data_dir, root / "home")
    tried: Counter = Counter()
    layouts: Counter = Counter()
    started = time.perf_counter()

    @hypothesis_settings(max_examples=examples_wanted, deadline=None, database=None,
                         suppress_health_check=list(HealthCheck), print_blob=True)
    @given(examples(data_dir, max_rows))
    def property_holds(example: Example) -> None:
        tried.update(example.kinds)
        layouts[example.dataset] += 1
        check(example, settings, root / "data" / example.dataset)
        if progress:
            progress(sum(layouts.values()))

    if seed is not None:
        property_holds = fixed_seed(seed)(property_holds)
    property_holds()
    return {"examples": sum(layouts.values()), "layouts": dict(layouts), "kinds": dict(tried),
            "seconds": round(time.perf_counter() - started, 1)}


__all__ = ["ContractViolation", "Example", "LAYOUTS", "check", "contract_settings", "examples", "run", "write_layout"]
