"""The one table bench/all.py prints: its rows and its options (nothing here is timed)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench"


def _load_bench():
    """bench/all.py and bench/report.py, without leaving bench/ (whose modules have names
    such as update and backup) on sys.path for the rest of the test run."""
    saved = list(sys.path)
    try:
        sys.path.insert(0, str(BENCH))
        import all as bench_all
        import report
    finally:
        sys.path[:] = saved
    return bench_all, report


bench_all, report = _load_bench()


def test_a_row_shows_both_baselines_and_the_daemons_ratio_to_each():
    rows = [report.row("GET /version by hash, 16 connections", "req/s", 4884.0,
                       [("minimal Klein", 4824.0), ("bare twisted.web", 8140.0)], ">= 0.9x minimal Klein")]
    lines = report.table(rows).splitlines()
    assert lines[0] == "| benchmark | figure | jidoteki-admin | baseline (which) | ratio | goal |"
    assert lines[2] == ("| GET /version by hash, 16 connections | req/s | 4,884 | 4,824 (minimal Klein); "
                        "8,140 (bare twisted.web) | 1.01; 0.60 | >= 0.9x minimal Klein |")


def test_a_pipe_in_a_cell_does_not_end_it_and_a_missing_figure_says_so():
    rows = [report.row("decrypt", "s", 0.0933, [("openssl enc | tar", 0.104)]),
            report.row("polling", "p99 ms", None, goal="< 50 ms"),
            report.row("polling", "answers not 200", 0)]
    lines = report.table(rows).splitlines()
    assert lines[2] == "| decrypt | s | 0.0933 | 0.104 (openssl enc \\| tar) | 0.90 | - |"
    assert lines[3] == "| polling | p99 ms | not measured | - | - | < 50 ms |"
    assert lines[4] == "| polling | answers not 200 | 0 | - | - | - |"


def test_the_rows_a_script_writes_are_the_rows_the_table_reads(tmp_path):
    written = [report.row("backup", "s (median)", 2.5, [("tar -cf", 2.0)], "<= 1.3x tar")]
    report.write_rows(str(tmp_path / "rows.json"), written)
    report.write_rows(None, written)  # alone, a script writes nothing
    assert "| backup | s (median) | 2.50 | 2.00 (tar -cf) | 1.25 | <= 1.3x tar |" in report.table(
        __import__("json").loads((tmp_path / "rows.json").read_text()))


def test_quick_sizes_are_small_and_the_defaults_are_the_full_ones():
    full, quick = bench_all.parse([]), bench_all.parse(["--quick", "--pollers", "50"])
    assert (full.size_mib, full.backup_mib, full.pollers, full.connections) == (1024, 1024, 200, "16,256")
    assert (quick.size_mib, quick.pollers) == (32, 50)
    assert "--clients" in bench_all.commands(quick)["polling"]


def test_all_py_help_runs():
    done = subprocess.run([sys.executable, str(BENCH / "all.py"), "--help"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "--quick" in done.stdout
