"""What the DAGs take from a person (control/orchestration.py): the trigger form's params refuse what
is not theirs, and the path param names an existing CSV or parquet file or gets a clear error."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from control.orchestration import EPOCHS, PATH, TABLE, TO_VERSION, given_file


def resolved(param, value):
    from copy import deepcopy

    return deepcopy(param).resolve(value)


@pytest.mark.parametrize("value", ["", " ", None])
def test_no_path_means_no_file(value):
    assert given_file(value) is None


def test_an_existing_csv_or_parquet_file_is_taken(tmp_path):
    for name in ("events.csv", "events.parquet"):
        (tmp_path / name).write_text("x")
        assert given_file(str(tmp_path / name)) == tmp_path / name


@pytest.mark.parametrize("name", ["missing.csv", "events.txt", "events.CSV.gz", "folder.csv", "a\x00b.csv",
                                  "../../etc/passwd", "x" * 5000 + ".csv", "~nobody/none.parquet"])
def test_anything_else_is_refused_naming_the_value(tmp_path, name):
    (tmp_path / "folder.csv").mkdir()
    (tmp_path / "events.txt").write_text("x")
    with pytest.raises(ValueError, match="the path param .* is not a .csv or .parquet file readable here"):
        given_file(str(tmp_path / name) if not name.startswith("~") else name)


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(st.text(max_size=300))
def test_any_text_is_a_file_or_a_clear_refusal(tmp_path, text):
    try:
        found = given_file(text)
    except ValueError as exc:
        assert "the path param" in str(exc) and len(str(exc)) < 400
        return
    assert found is None or (found.is_file() and found.suffix in (".csv", ".parquet"))


@pytest.mark.parametrize(("param", "good", "bad"), [
    (PATH, ["/data/events.csv", None], [3, ["a"], "x" * 4097]),
    (TABLE, ["events", "items", "users", "tags"], ["Events", "orders", "", None, 1]),
    (TO_VERSION, ["1", "12", None], ["0", "-1", "1.5", "01", "latest", "1; DROP TABLE", 3, "1" * 11]),
    (EPOCHS, [0, 5, None], [-1, 1001, "five", 2.5, True]),
])
def test_the_trigger_forms_params_take_only_their_values(param, good, bad):
    from airflow.sdk.definitions.param import ParamValidationError

    for value in good:
        assert resolved(param, value) == value
    for value in bad:
        with pytest.raises(ParamValidationError):
            resolved(param, value)
