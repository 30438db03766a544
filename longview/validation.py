"""Great Expectations: run a table's suite from ``expectations/`` and say which rows failed and why."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from longview.settings import Settings

log = logging.getLogger(__name__)

# Expectations about the whole table: when one fails, the whole batch is rejected.
TABLE_LEVEL = {"expect_table_columns_to_match_set", "expect_table_row_count_to_be_between",
               "expect_column_max_to_be_between"}


@dataclass
class ValidationOutcome:
    success: bool
    row_reasons: dict[int, list[str]] = field(default_factory=dict)  # frame index -> reasons
    table_failures: list[str] = field(default_factory=list)
    report: Path | None = None
    data_docs: str | None = None


def load_suite_config(settings: Settings, table: str) -> dict[str, Any]:
    path = settings.expectations_dir / f"{table}.json"
    return json.loads(path.read_text())


def _gx_context(settings: Settings):
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    settings.gx_dir.mkdir(parents=True, exist_ok=True)
    context = gx.get_context(mode="file", project_root_dir=str(settings.gx_dir))
    # Our own steps report progress; GX's per-metric bars would flood task logs.
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    return context


def validate_frame(
    settings: Settings,
    table: str,
    frame: pd.DataFrame,
    parameters: dict[str, Any],
    batch_id: str,
    masks: dict[str, Callable[[Any], Any]] | None = None,
) -> ValidationOutcome:
    """Validate ``frame`` with the named suite; rows are identified by the frame's index.

    ``masks`` replace the failing values GX reports for personal columns (raw ids) before the
    result is written to the report and Data Docs."""
    import great_expectations as gx
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    config = load_suite_config(settings, table)
    present = set(frame.columns)
    # Left out for this run: an expectation whose parameter is not available (no catalogue yet), and
    # one on an optional column the batch does not have (required columns are the table-level check's).
    expectations = []
    for exp in config["expectations"]:
        needed = [v["$PARAMETER"] for v in exp["kwargs"].values() if isinstance(v, dict) and "$PARAMETER" in v]
        column = exp["kwargs"].get("column")
        if all(parameters.get(name) is not None for name in needed) and (column is None or column in present):
            expectations.append(ExpectationConfiguration(type=exp["type"], kwargs=exp["kwargs"], meta=exp.get("meta")))

    context = _gx_context(settings)
    suite = context.suites.add_or_update(gx.ExpectationSuite(
        name=table, expectations=[e.to_domain_obj() for e in expectations]))
    source = context.data_sources.add_or_update_pandas(name="longview")
    asset = next((a for a in source.assets if a.name == table), None) or source.add_dataframe_asset(name=table)
    batch_def = next((b for b in asset.batch_definitions if b.name == "batch"), None) \
        or asset.add_batch_definition_whole_dataframe("batch")
    batch = batch_def.get_batch(batch_parameters={"dataframe": frame})
    result = batch.validate(suite, result_format={"result_format": "COMPLETE"}, expectation_parameters=parameters)

    outcome = ValidationOutcome(success=bool(result.success))
    for res in result.results:
        cfg = res.expectation_config
        mask = (masks or {}).get(cfg.kwargs.get("column"))
        if mask and res.result:
            _mask_values(res.result, mask)
        meta = cfg.meta or {}
        reason = meta.get("reason", cfg.type)
        column = cfg.kwargs.get("column")
        error = _exception_message(res.exception_info)
        if error is not None:  # GX caught an error inside the expectation: its verdict means nothing
            outcome.table_failures.append(f"{cfg.type}({column or 'table'}) could not run: {error}")
            continue
        if res.success:
            continue
        if cfg.type in TABLE_LEVEL or column is None:
            missing = sorted(set(cfg.kwargs.get("column_set", [])) - present)
            observed = (res.result or {}).get("observed_value")
            detail = ", ".join(missing) if missing else (f"{column} = {observed:.3g}" if isinstance(observed, float) else "")
            outcome.table_failures.append(f"{reason}: {detail}" if detail else reason)
            continue
        label = f"{cfg.type}({column}): {reason}"
        detail_column = meta.get("detail_column")  # a column that says more about each failing row
        failing = [idx if not isinstance(idx, dict) else idx.get("index")
                   for idx in res.result.get("unexpected_index_list") or []]
        if not failing:
            outcome.table_failures.append(f"{cfg.type}({column}) failed without naming the failing rows")
        for key in failing:
            text = f"{label}: {frame.at[key, detail_column]}" if detail_column else label
            outcome.row_reasons.setdefault(int(key), []).append(text)
    if not outcome.success and not outcome.table_failures and not outcome.row_reasons:
        outcome.table_failures.append("the suite failed without a failing expectation")

    settings.reports_dir.mkdir(parents=True, exist_ok=True)
    outcome.report = settings.reports_dir / f"{table}-{batch_id}.json"
    summary = result.describe_dict() if hasattr(result, "describe_dict") else result.to_json_dict()
    outcome.report.write_text(json.dumps(summary, indent=2, default=str))
    try:
        vr_store = context.validation_results_store
        from great_expectations.data_context.types.resource_identifiers import (
            ExpectationSuiteIdentifier,
            ValidationResultIdentifier,
        )

        key = ValidationResultIdentifier(
            expectation_suite_identifier=ExpectationSuiteIdentifier(name=table),
            run_id=result.meta.get("run_id"),
            batch_identifier=batch_id,
        )
        vr_store.set(key, result)
        urls = context.build_data_docs(resource_identifiers=[key])  # this run's page (and the index), not all
        index = next(iter(urls.values()), None)
        # Link the page of this very validation run when the site has one, else the site's index.
        pages = sorted(settings.gx_dir.rglob(f"data_docs/*/validations/{table}/**/{batch_id}.html"))
        outcome.data_docs = pages[-1].as_uri() if pages else index
    except Exception as exc:  # Data Docs are a convenience: the JSON report is the record.
        log.warning("could not build Data Docs: %s", exc)
    return outcome


def _exception_message(info: Any) -> str | None:
    """GX's message for an expectation that raised, or None. GX 1.x reports either one
    ``{raised_exception, exception_message, ...}`` dict or such dicts keyed by metric."""
    if not info:
        return None
    entries = [info] if "raised_exception" in info else [v for v in info.values() if isinstance(v, dict)]
    for entry in entries:
        if entry.get("raised_exception"):
            return str(entry.get("exception_message") or "unknown error").splitlines()[0]
    return None


def _mask_values(result: dict, mask: Callable[[Any], Any]) -> None:
    """Replace the raw values GX lists for an expectation's failing rows (indexes stay)."""
    for name in ("partial_unexpected_list", "unexpected_list"):
        if result.get(name):
            result[name] = [mask(v) for v in result[name]]
    if result.get("partial_unexpected_counts"):
        result["partial_unexpected_counts"] = [{**c, "value": mask(c["value"])} for c in result["partial_unexpected_counts"]]
