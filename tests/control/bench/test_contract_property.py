"""The data contract as a property: random corruption of real data, in every loader layout, is
routed row by row (control/bench/contract_fuzz.py says what is checked). 25 examples here, the same ones
every run; `longview bench contract --examples 500` explores more."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings

from control.bench import contract_fuzz
from longview.settings import get_settings
from tests.conftest import real_data

DATA_DIR = get_settings().data_dir


@pytest.fixture(scope="module")
def contract_home(tmp_path_factory):
    for name in ("ml-100k", "ml-1m-sasrec", "instacart-sample"):
        real_data(name)  # fails in CI, skips elsewhere, when the real data is missing
    root = tmp_path_factory.mktemp("contract")
    return contract_fuzz.contract_settings(DATA_DIR, root / "home"), root


@settings(max_examples=25, deadline=None, database=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(example=contract_fuzz.examples(DATA_DIR, max_rows=300))
def _routed_as_the_contract_says(example, home) -> None:
    settings_, root = home
    contract_fuzz.check(example, settings_, root / "data" / example.dataset)


def test_corrupted_real_data_is_routed_row_by_row(contract_home):
    _routed_as_the_contract_says(home=contract_home)


def test_the_check_catches_a_loader_that_drops_a_row(contract_home, monkeypatch):
    """The property can fail: a loader that silently drops its last rating row is caught."""
    from hypothesis import find

    from longview.datasets import movielens

    real_events = movielens._events
    monkeypatch.setattr(movielens, "_events", lambda records, gap: real_events(records, gap).iloc[:-1])
    settings_, root = contract_home
    example = find(contract_fuzz.examples(DATA_DIR, max_rows=50, structure_share=0.0),
                   lambda e: e.dataset == "ml-100k", settings=settings(database=None, derandomize=True))
    with pytest.raises(contract_fuzz.ContractViolation, match="received"):
        contract_fuzz.check(example, settings_, root / "data" / "dropped")
