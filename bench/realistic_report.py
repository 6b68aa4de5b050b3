"""The realistic scenario's figures as a table and a list of targets (see :mod:`bench.realistic`).

Each measurement is one system on one shape in one repeat. Ratios against the
raw server are taken within a repeat (same machine load), then every figure
and ratio is the median over the repeats.
"""

from __future__ import annotations

from statistics import median
from typing import Any

from bench.deps import reference_of
from bench.text import fmt

#: Figures that get a ratio against raw's in the same repeat.
RATIOS = ("server_us_per_event", "p99_ms", "redis_calls_per_event")
#: Target ratios against raw in the many-executions scenarios.
MAX_CPU_RATIO = 1.5
MAX_P99_RATIO = 1.5


def _shape(r: dict[str, Any]) -> tuple[int, int]:
    return r["executions"], r["per_execution"]


def summarise(repeats: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """One row per (shape, system): medians over repeats, ratios against raw per repeat."""
    groups: dict[tuple[tuple[int, int], str], list[dict[str, Any]]] = {}
    for results in repeats:
        raw = {(_shape(r), r["system"]): r for r in results
               if r["system"] == reference_of(r["system"]) and "error" not in r}
        for r in results:
            r = dict(r)
            base = raw.get((_shape(r), reference_of(r["system"])))
            if base is not None and "error" not in r:
                for key in RATIOS:
                    if base.get(key):
                        r[f"{key}_ratio"] = r[key] / base[key]
            groups.setdefault((_shape(r), r["system"]), []).append(r)
    rows = []
    for (shape, system), runs in groups.items():
        good = [r for r in runs if "error" not in r]
        row: dict[str, Any] = {"system": system, "label": runs[0]["label"],
                               "executions": shape[0], "per_execution": shape[1],
                               "runs": len(runs), "failed": len(runs) - len(good)}
        if not good:
            row["error"] = runs[0]["error"]
        for key in sorted({k for r in good for k, v in r.items() if isinstance(v, (int, float))
                           and not isinstance(v, bool)}):
            values = [r[key] for r in good if key in r]
            row[key] = median(values)
            row[f"{key}_all"] = values
        row["lost_all"] = [r.get("lost") for r in good]
        row["ids_in_order"] = all(r.get("ids_in_order") for r in good)
        if good:
            row["redis_commands"] = good[0].get("redis_commands", {})
        rows.append(row)
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    """The rows as a Markdown table."""
    out = ["| shape | system | connect s | RSS KB/stream | sent/s | p50 / p99 ms (p99 ×raw) | "
           "lost | server µs/event (×raw) | Redis cmds/event (×raw) | Redis CPU µs/event |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        shape = f"{r['executions']:,} × {r['per_execution']}"
        if "error" in r:
            out.append(f"| {shape} | {r['label']} | failed: {r['error']} ||||||||")
            continue
        out.append(
            f"| {shape} | {r['label']} | {fmt(r.get('connect_s'), '.2f')} | "
            f"{fmt(r.get('rss_kb_per_stream'), '.1f')} | {fmt(r.get('send_rate'))} | "
            f"{fmt(r.get('p50_ms'))} / {fmt(r.get('p99_ms'))} (×{fmt(r.get('p99_ms_ratio'), '.1f')}) | "
            f"{', '.join(str(x) for x in r['lost_all'])} | "
            f"{fmt(r.get('server_us_per_event'), '.1f')} "
            f"(×{fmt(r.get('server_us_per_event_ratio'), '.2f')}) | "
            f"{fmt(r.get('redis_calls_per_event'), '.2f')} "
            f"(×{fmt(r.get('redis_calls_per_event_ratio'), '.2f')}) | "
            f"{fmt(r.get('redis_us_per_event'), '.1f')} |")
    return "\n".join(out)


def targets(rows: list[dict[str, Any]]) -> str:
    """Each target of the scenario: met or missed, with the median figures."""
    lines = []

    def check(what: str, ok: bool, detail: str) -> None:
        lines.append(f"- [{'x' if ok else ' '}] {what}: {detail}")

    ours = [r for r in rows if r["system"] != reference_of(r["system"]) and "error" not in r]
    for r in ours:
        name = f"{r['executions']:,}×{r['per_execution']} {r['system']}"
        cpu, p99 = r.get("server_us_per_event_ratio"), r.get("p99_ms_ratio")
        check(f"{name}: server CPU per delivered event ≤ {MAX_CPU_RATIO}× raw",
              cpu is not None and cpu <= MAX_CPU_RATIO, f"{fmt(cpu, '.2f')}×")
        check(f"{name}: p99 ≤ {MAX_P99_RATIO}× raw", p99 is not None and p99 <= MAX_P99_RATIO,
              f"{fmt(p99, '.2f')}× ({fmt(r.get('p99_ms'))} ms)")
        check(f"{name}: 0 lost", all(x == 0 for x in r["lost_all"]) and r["ids_in_order"],
              f"lost {r['lost_all']}, ids in order: {r['ids_in_order']}")
    by_system: dict[str, list[dict[str, Any]]] = {}
    for r in ours:
        by_system.setdefault(r["system"], []).append(r)
    for system, shapes in by_system.items():
        if len(shapes) < 2:
            continue
        calls = [r["redis_calls_per_event"] for r in shapes]
        spread = max(calls) / min(calls)
        detail = ", ".join(f"{int(r['executions']):,} executions: {r['redis_calls_per_event']:.2f}"
                           for r in shapes)
        check(f"{system}: Redis commands per event independent of executions (within 20 %)",
              spread <= 1.2, detail)
    return "\n".join(lines)


def hops(rows: list[dict[str, Any]]) -> str:
    """Per app row: p50/p99 of sender -> Redis, Redis -> hub, and end to end (``--trace``)."""
    lines = ["| shape | system | sender → Redis p50 / p99 ms | Redis → hub p50 / p99 ms "
             "| end to end p50 / p99 ms |", "|---|---|---|---|---|"]
    for r in rows:
        if "hop_receive_p99_ms" not in r:
            continue
        lines.append(
            f"| {r['executions']:,} × {r['per_execution']} | {r['label']} "
            f"| {r['hop_send_p50_ms']:.1f} / {r['hop_send_p99_ms']:.1f} "
            f"| {r['hop_receive_p50_ms']:.1f} / {r['hop_receive_p99_ms']:.1f} "
            f"| {r['p50_ms']:.1f} / {r['p99_ms']:.1f} |")
    return "\n".join(lines)
