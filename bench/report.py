"""The shape every benchmark reports its figures in, and the one table bench/all.py prints.

A row is one figure of the daemon beside the same figure of one or more baselines measured
in the same run:

    {"benchmark": "GET /version by hash, 16 connections", "figure": "req/s",
     "value": 4884.0, "baselines": [["minimal Klein", 4824.0], ["bare twisted.web", 8130.0]],
     "goal": ">= 0.9x minimal Klein"}

The ratio is always the daemon's figure over the baseline's, whatever the unit: above 1
is better for req/s and MiB/s, worse for seconds, milliseconds and MiB of memory. The goal
column says which way to read it. A value of None means the figure was not measured.
"""

from __future__ import annotations

import json
import os
import platform
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

Row = dict[str, Any]


def row(benchmark: str, figure: str, value: float | None,
        baselines: list[tuple[str, float | None]] | None = None, goal: str = "") -> Row:
    return {"benchmark": benchmark, "figure": figure, "value": value,
            "baselines": [[name, figure_value] for name, figure_value in (baselines or [])], "goal": goal}


def write_rows(path: str | None, rows: list[Row]) -> None:
    """Write the rows for bench/all.py; nothing when the script runs alone (path is None)."""
    if path:
        Path(path).write_text(json.dumps(rows, indent=1) + "\n")


def number(value: float | None) -> str:
    """Enough digits to compare, no more: 4,884 / 470 / 12.3 / 2.88 / 0.0312."""
    if value is None:
        return "not measured"
    if isinstance(value, int):
        return f"{value:,}"
    size = abs(value)
    if size >= 1000:
        return f"{value:,.0f}"
    if size >= 100:
        return f"{value:.0f}"
    if size >= 10:
        return f"{value:.1f}"
    if size >= 1 or size == 0:
        return f"{value:.2f}"
    if size >= 0.1:
        return f"{value:.3f}"
    return f"{value:.3g}"


def ratio(value: float | None, baseline: float | None) -> str:
    if value is None or baseline is None or baseline == 0:
        return "-"
    return f"{value / baseline:.2f}"


def cell(text: str) -> str:
    """A '|' inside a cell (a shell pipeline) would end it."""
    return text.replace("|", "\\|")


def table(rows: list[Row]) -> str:
    """One markdown table; a figure measured against two baselines shows both, ';' apart."""
    lines = ["| benchmark | figure | jidoteki-admin | baseline (which) | ratio | goal |",
             "| --- | --- | ---: | --- | ---: | --- |"]
    for item in rows:
        baselines = item.get("baselines") or []
        against = cell("; ".join(f"{number(value)} ({name})" for name, value in baselines) or "-")
        ratios = "; ".join(ratio(item["value"], value) for _, value in baselines) or "-"
        lines.append(f"| {cell(item['benchmark'])} | {cell(item['figure'])} | {number(item['value'])} | "
                     f"{against} | {ratios} | {cell(item.get('goal') or '-')} |")
    return "\n".join(lines)


def _version(module: str) -> str:
    try:
        from importlib.metadata import version
        return version(module)
    except Exception:
        return "?"


def machine() -> str:
    """Where the figures come from: they mean little without it."""
    memory_kib = next((int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                       if line.startswith("MemTotal:")), 0) if Path("/proc/meminfo").exists() else 0
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; {os.cpu_count()} cores, "
            f"{memory_kib / (1 << 20):.0f} GiB memory, load average {load:.2f} at the start; "
            f"{platform.system()} {platform.release()}; Python {platform.python_version()}, "
            f"Twisted {_version('twisted')}, Klein {_version('klein')}, OpenSSL "
            f"{_openssl()}")


def _openssl() -> str:
    import ssl
    return ssl.OPENSSL_VERSION.split()[1] if ssl.OPENSSL_VERSION.startswith("OpenSSL") else ssl.OPENSSL_VERSION
