"""What a section hands back, and the tables printed from it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from devstack.bench.load import Summary


@dataclass
class Report:
    section: str
    heading: str = ""
    summaries: list[Summary] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    skipped: str | None = None
    rate: str = "RPS"


def render(reports: Sequence[Report]) -> str:
    lines: list[str] = []
    for report in reports:
        if report.skipped is not None:
            lines.append(f"{report.section}: skipped - {report.skipped}")
            continue
        compared = any(summary.versus for summary in report.summaries)
        metered = any(summary.cpu_ms is not None for summary in report.summaries)
        header: tuple[str, ...] = ("scenario", "requests", "errors", report.rate)
        header += ("p50 ms", "p95 ms", "p99 ms") + (("CPU ms",) if metered else ())
        header += ("vs baseline",) if compared else ()
        rows = [header] + [
            (
                summary.name,
                f"{summary.requests:,}",
                f"{summary.errors:,}",
                f"{summary.rps:,.1f}",
                *(_ms(value) for value in (summary.p50_ms, summary.p95_ms, summary.p99_ms)),
                *((_cpu_ms(summary.cpu_ms),) if metered else ()),
                *((summary.versus or "",) if compared else ()),
            )
            for summary in report.summaries
        ]
        widths = [max(len(row[column]) for row in rows) for column in range(len(header))]
        lines.append(report.heading)
        for row in rows:
            first, *numbers = row
            lines.append(
                "  ".join(
                    [first.ljust(widths[0])]
                    + [value.rjust(width) for value, width in zip(numbers, widths[1:], strict=True)]
                )
            )
        lines.extend(
            f"  first error of {summary.name}: {summary.first_error}"
            for summary in report.summaries
            if summary.first_error
        )
        lines.extend(report.notes)
        lines.append("")
    return "\n".join(lines).rstrip("\n")


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _cpu_ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def versus_rps(row: Summary, baseline: Summary, label: str) -> Summary:
    """`row` with its RPS as a multiple of `baseline`'s (the raw driver's, say)."""
    if not (row.rps and baseline.rps):
        return row
    return replace(row, versus=f"{row.rps / baseline.rps:.2f}x RPS of {label}")


def versus_p95(row: Summary, baseline: Summary, label: str) -> Summary:
    """`row` with its p95 as a multiple of `baseline`'s (page 1's, for a deep page)."""
    if row.p95_ms is None or not baseline.p95_ms:
        return row
    return replace(row, versus=f"{row.p95_ms / baseline.p95_ms:.2f}x p95 of {label}")


def ratio_note(api: Summary, raw: Summary, what: str = "GET by id") -> str:
    if not (api.rps and raw.rps and api.p50_ms and raw.p50_ms):
        return "API/raw: not enough successful requests for a ratio"
    return f"API/raw for {what}: RPS {api.rps / raw.rps:.2f}x, p50 {api.p50_ms / raw.p50_ms:.2f}x"


def first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]
