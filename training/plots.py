"""The figures people look at rather than read, saved as PNG for MLflow: metrics by model and a
learning curve (training loss, validation metric)."""

from __future__ import annotations

from pathlib import Path


def pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on servers and workers
    import matplotlib.pyplot as plt

    return plt


def bars(values: dict[str, float], ylabel: str, title: str, path: Path) -> Path:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.bar(list(values), list(values.values()))
    ax.set(ylabel=ylabel, title=title)
    ax.tick_params(axis="x", labelrotation=20)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def learning_curve(curve: list[dict[str, float]], path: Path) -> Path | None:
    """Loss per epoch and, on a second axis, the validation metric where it was measured; None
    when the fit has no epochs (the closed-form and counting models)."""
    losses = [r for r in curve if "loss" in r and "epoch" in r]
    if not losses:
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.set(xlabel="epoch", ylabel="cross-entropy (solid)")
    twin = None
    for member in sorted({r.get("member", 0.0) for r in losses}):  # an ensemble: one pair of lines per network
        rows = [r for r in losses if r.get("member", 0.0) == member]
        ax.plot([r["epoch"] for r in rows], [r["loss"] for r in rows], color=f"C{int(member) % 10}")
        checked = [r for r in rows if "validation" in r]
        if checked:
            twin = twin or ax.twinx()
            twin.plot([r["epoch"] for r in checked], [r["validation"] for r in checked], "o--",
                      color=f"C{int(member) % 10}")
    if twin is not None:
        twin.set_ylabel("validation NDCG@10 (dashed)")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def retention_curve(report, title: str, path: Path) -> Path:
    """The share of visits not yet followed by a return, by days since the visit: observed
    (Kaplan-Meier, censoring respected) against the value head's mean forecast, and the
    baseline's mean chance of a return within H as a point (training/long_term_value.ValueReport)."""
    import numpy as np
    from lifelines import KaplanMeierFitter

    plt = pyplot()
    forecast, visits = report.forecast, report.holdout
    horizon = float(forecast.horizon_days)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    observed = KaplanMeierFitter().fit(np.minimum(visits.days, horizon), visits.returned & (visits.days <= horizon))
    ax.step(observed.survival_function_.index, observed.survival_function_.iloc[:, 0], where="post",
            label="observed (Kaplan-Meier)")
    ax.plot(forecast.edges, np.r_[1.0, forecast.survival.mean(axis=0)], marker="o", label="value head (mean forecast)")
    if report.baseline_within is not None:
        ax.plot([forecast.return_days], [1.0 - float(np.mean(report.baseline_within))], marker="s", linestyle="none",
                label=f"baseline at {forecast.return_days:g} days")
    ax.set(xlabel="days since the visit", ylabel="share not yet back", title=title, xlim=(0, horizon), ylim=(0, 1.02))
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
