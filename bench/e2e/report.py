"""The end-to-end benchmark's figures: medians over rounds, the ratios, the table, the chart."""

from __future__ import annotations

import math
import statistics
from collections import Counter
from pathlib import Path
from typing import Any

PHASES = ("concurrent", "sequential")
LATENCIES = ("p50_ms", "p95_ms", "p99_ms", "mean_ms", "max_ms")
CORTEX_ROWS = ("cortex-rest", "cortex-bus")
BASELINES = ("floor", "floor-js", "celery", "dramatiq", "taskiq")


def _median(values: list[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return statistics.median(finite) if finite else float("nan")


def summarize(row: str, samples: list[dict[str, Any]], description: str) -> dict[str, Any]:
    """One row: each figure the median over the rounds; counts and errors summed."""
    summary: dict[str, Any] = {"system": row, "description": description, "rounds": len(samples)}
    failed = 0
    for phase in PHASES:
        runs = [s[phase] for s in samples]
        errors: Counter[str] = Counter()
        for r in runs:
            errors.update(r["errors"])
        part: dict[str, Any] = {
            "concurrency": runs[0]["concurrency"],
            "jobs": sum(r["jobs"] for r in runs),
            "completed": sum(r["completed"] for r in runs),
            "failed": sum(r["failed"] for r in runs),
            "wrong_results": sum(r["wrong_results"] for r in runs),
            "errors": dict(errors.most_common(5)),
            "jobs_per_s": _median([r["jobs_per_s"] for r in runs]),
            **{k: _median([r[k] for r in runs]) for k in LATENCIES},
        }
        if "status_calls_per_job" in runs[0]:
            part["status_calls_per_job"] = _median([r["status_calls_per_job"] for r in runs])
        part["per_round"] = [{k: r[k] for k in ("jobs_per_s", *LATENCIES)} for r in runs]
        failed += part["failed"]
        summary[phase] = part
    cpus = [s["cpu_ms_per_job"] for s in samples if s.get("cpu_ms_per_job")]
    summary["cpu_ms_per_job"] = (
        {k: _median([c.get(k, float("nan")) for c in cpus]) for k in cpus[0]} if cpus else None
    )
    summary["warmup_failed"] = sum(s["warmup"]["failed"] for s in samples)
    summary["failed"] = failed + summary["warmup_failed"]
    summary["versions"] = samples[0]["versions"]
    return summary


def _ratio(a: float, b: float) -> float:
    return a / b if b and not math.isnan(a) and not math.isnan(b) else float("nan")


def ratios(rows: dict[str, dict[str, Any]]) -> dict[str, dict[str, dict[str, float]]]:
    """Cortex ÷ each baseline: throughput (above 1: Cortex does more) and p50s (below 1:
    Cortex is faster)."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for mine in CORTEX_ROWS:
        if mine not in rows:
            continue
        me = rows[mine]
        out[mine] = {
            other: {
                "jobs_per_s": _ratio(
                    me["concurrent"]["jobs_per_s"], them["concurrent"]["jobs_per_s"]
                ),
                "p50_ms_concurrent": _ratio(
                    me["concurrent"]["p50_ms"], them["concurrent"]["p50_ms"]
                ),
                "p50_ms_sequential": _ratio(
                    me["sequential"]["p50_ms"], them["sequential"]["p50_ms"]
                ),
            }
            for other in BASELINES
            if (them := rows.get(other)) is not None
        }
    on, off = rows.get("cortex-rest"), rows.get("cortex-rest-nometrics")
    if on is not None and off is not None:
        # What metrics cost: the same REST run with CORTEX_METRICS_ENABLED=false.
        out.setdefault("cortex-rest", {})["cortex-rest-nometrics"] = {
            "jobs_per_s": _ratio(on["concurrent"]["jobs_per_s"], off["concurrent"]["jobs_per_s"]),
            "p50_ms_concurrent": _ratio(on["concurrent"]["p50_ms"], off["concurrent"]["p50_ms"]),
            "p50_ms_sequential": _ratio(on["sequential"]["p50_ms"], off["sequential"]["p50_ms"]),
        }
    return out


def json_safe(value: Any) -> Any:
    """NaN (a figure over no completed job) as null, so that the file is strict JSON."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def table(rows: dict[str, dict[str, Any]]) -> str:
    first = next(iter(rows.values()))
    c, s = first["concurrent"]["concurrency"], first["sequential"]["concurrency"]
    head = (
        f"{'system':<13}{'jobs/s':>8}{f'p50@{c}':>9}{f'p95@{c}':>9}{f'p99@{c}':>9}"
        f"{f'p50@{s}':>8}{f'p95@{s}':>8}{f'p99@{s}':>8}{'failed':>8}{'cpu/job':>9}"
    )
    lines = [head + "   (latencies and CPU in ms)"]
    for name, r in rows.items():
        cc, sq = r["concurrent"], r["sequential"]
        lines.append(
            f"{name:<13}{cc['jobs_per_s']:>8.0f}{cc['p50_ms']:>9.1f}{cc['p95_ms']:>9.1f}"
            f"{cc['p99_ms']:>9.1f}{sq['p50_ms']:>8.2f}{sq['p95_ms']:>8.2f}{sq['p99_ms']:>8.2f}"
            f"{r['failed']:>8}"
            + (f"{cpu['total']:>9.2f}" if (cpu := r.get("cpu_ms_per_job")) else f"{'-':>9}")
        )
    return "\n".join(lines)


def cpu_table(rows: dict[str, dict[str, Any]]) -> str:
    """Where each system's CPU went: ms per job by process, the largest first."""
    lines = []
    for name, r in rows.items():
        cpu = r.get("cpu_ms_per_job")
        if not cpu:
            continue
        parts = sorted(((k, v) for k, v in cpu.items() if k != "total"), key=lambda kv: -kv[1])
        lines.append(
            f"{name:<22}{cpu['total']:>6.2f} = " + " + ".join(f"{v:.2f} {k}" for k, v in parts)
        )
    return "\n".join(lines)


def ratio_table(found: dict[str, dict[str, dict[str, float]]], c: int) -> str:
    lines = [
        "Cortex ÷ baseline (jobs/s: above 1 is faster; p50: below 1 is faster)",
        f"{'':<24}{'jobs/s':>8}{f'p50@{c}':>9}{'p50@1':>8}",
    ]
    for mine, against in found.items():
        for other, r in against.items():
            lines.append(
                f"{mine + ' ÷ ' + other:<24}{r['jobs_per_s']:>8.2f}"
                f"{r['p50_ms_concurrent']:>9.2f}{r['p50_ms_sequential']:>8.2f}"
            )
    return "\n".join(lines)


def _label(value: float) -> str:
    return f"{value:.0f}" if value >= 100 else f"{value:.3g}"


def chart(rows: dict[str, dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(rows)
    colors = ["tab:red" if n.startswith("cortex") else "tab:gray" for n in names]
    c = next(iter(rows.values()))["concurrent"]["concurrency"]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.8))
    panels = [
        (
            f"jobs/s at C={c} (higher is better)",
            [rows[n]["concurrent"]["jobs_per_s"] for n in names],
        ),
        (f"p50 latency at C={c}, ms", [rows[n]["concurrent"]["p50_ms"] for n in names]),
        ("p50 latency at C=1, ms", [rows[n]["sequential"]["p50_ms"] for n in names]),
    ]
    for ax, (label, values) in zip(axes, panels, strict=True):
        bars = ax.bar(names, values, color=colors)
        ax.bar_label(bars, labels=[_label(v) for v in values], fontsize=8)
        ax.set_title(label, fontsize=10)
        ax.tick_params(axis="x", labelrotation=40, labelsize=8)
        for tick in ax.get_xticklabels():
            tick.set_horizontalalignment("right")
        ax.margins(y=0.12)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
