"""`masnn bench gpu`'s report for people: one table row per check, then one verdict line."""
from __future__ import annotations

import json
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from masnn.bench.gpu import CheckResult, failures

STYLES = {"pass": "green", "FAIL": "bold red", "skip": "yellow", "info": "cyan"}


def report_table(results: list[CheckResult], title: str) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column("group")
    table.add_column("check")
    table.add_column("status")
    table.add_column("result", overflow="fold")
    for r in results:
        table.add_row(r.group, r.name, f"[{STYLES[r.status]}]{r.status}[/]", r.summary)
    return table


def verdict(results: list[CheckResult], elapsed_s: float, subject: str = "the GPU path") -> str:
    """One line: what passed and failed, what was only measured or skipped, and how long it took."""
    counts = {s: sum(r.status == s for r in results) for s in STYLES}
    failed = failures(results)
    head = f"FAILED: {', '.join(r.name for r in failed)}" if failed else f"{subject} passed every check that ran"
    return (f"{head} ({counts['pass']} passed, {counts['FAIL']} failed, {counts['info']} measured, "
            f"{counts['skip']} skipped; {elapsed_s:.0f} s)")


def parse_groups(only: str) -> tuple[str, ...]:
    """--only: comma-separated group names; empty: every group."""
    from masnn.bench.gpu import GROUPS

    chosen = tuple(g.strip() for g in only.split(",") if g.strip())
    unknown = sorted(set(chosen) - set(GROUPS))
    if unknown:
        raise ValueError(f"--only: unknown group(s) {', '.join(unknown)}; choose from {', '.join(GROUPS)}")
    return chosen or GROUPS


def run_command(device_name: str, quick: bool, budget_s: float, only: str, out: Path | None, as_json: bool) -> int:
    """`masnn bench gpu`: the exit code (1 when a correctness check failed; 0 without CUDA, after one line)."""
    from masnn.bench.gpu import NO_CUDA, PLANS, report_dict, resolve_device, run_checks, write_report
    from masnn.cli.console import console

    groups = parse_groups(only)
    device = resolve_device(device_name)
    if device is None:
        print(NO_CUDA)
        return 0
    plan = PLANS["cpu" if device.type == "cpu" else ("quick" if quick else "full")]
    started = time.monotonic()
    progress = Console(stderr=True)
    shown = [0]

    def after_group(results: list[CheckResult]) -> None:
        new, shown[0] = results[shown[0]:], len(results)
        for r in new:
            progress.print(f"[{STYLES[r.status]}]{r.status:>4}[/] {r.name}: {r.summary}", highlight=False, soft_wrap=True)
        if out is not None:
            write_report(out, report_dict(results, plan, time.monotonic() - started, complete=False))

    results = run_checks(plan, device, groups, budget_s, after_group)  # progress on stderr: a run cut short still shows
    elapsed = time.monotonic() - started
    report = report_dict(results, plan, elapsed)
    if out is not None:
        write_report(out, report)
    subject = "the GPU path" if device.type == "cuda" else "the check's logic on the CPU"
    if as_json:
        print(json.dumps(report, indent=1))
    else:
        console.print(report_table(results, f"masnn bench gpu: plan {plan.name} on {device}"))
        console.print(verdict(results, elapsed, subject))
    return 1 if failures(results) else 0
