"""A typed reader of taskbench's summary.json, for the bench/ scripts: the case fields they use, by name.

As a module (from the bench/ scripts' Python, run from the repository root):

    from bench.summary import read_summary
    for case in read_summary("run/summary.json").cases:
        print(case.name, case.throughput_per_s, case.latency_ns.p50_us)

As a command, for a shell script: prints one line per case, from a format string over the case's fields
(`str.format`, so `{latency_ns.p50}` and `{throughput_per_s:,.0f}` work; an unknown field is an error) and
the values given with --set:

    python3 -m bench.summary RUN/summary.json '{name} {throughput_per_s:.0f} {latency_ns.p50_us:.1f}'
    taskbench run ... --format json | python3 -m bench.summary - --case NAME --no-errors '{throughput_per_s}'
    python3 -m bench.summary RUN/summary.json --set label=cpu '{label}: {name} {error_count} errors'

The field names are summary.json's (see the README's summary.json section); only those the scripts read are
here, so a field renamed in taskbench fails here, by name, rather than deep inside a script.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class SummaryError(ValueError):
    """summary.json does not hold what the reader expects (a field missing or of the wrong type)."""


def _field(obj: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in obj:
        raise SummaryError(f"{where}: no field {key!r}")
    value = obj[key]
    if not isinstance(value, kind):
        raise SummaryError(f"{where}: {key!r} is {value!r}, not {kind}")
    return value


def _micros(ns: int | None) -> float:
    return float("nan") if ns is None else ns / 1000


@dataclass(frozen=True)
class Latency:
    """A case's latency percentiles (`latency_ns`), in nanoseconds; `None` when no publish succeeded."""

    p50: int | None
    p99: int | None
    max: int | None

    @property
    def p50_us(self) -> float:
        return _micros(self.p50)

    @property
    def p99_us(self) -> float:
        return _micros(self.p99)

    @property
    def max_us(self) -> float:
        return _micros(self.max)

    @classmethod
    def parse(cls, obj: dict[str, Any], where: str) -> Latency:
        number = (int, type(None))
        return cls(
            p50=_field(obj, "p50", number, where),
            p99=_field(obj, "p99", number, where),
            max=_field(obj, "max", number, where),
        )


@dataclass(frozen=True)
class Floor:
    """A case's floor (`floor`, with `floor = true` or `run --floor`): the bare client's figures and the case's
    ratios to them; `unavailable` says why there are none."""

    throughput_per_s: float
    p50: int | None
    p50_ratio: float | None
    throughput_ratio: float | None
    unavailable: str | None

    @property
    def p50_us(self) -> float:
        return _micros(self.p50)

    @classmethod
    def parse(cls, obj: dict[str, Any], where: str) -> Floor:
        ratio = (int, float, type(None))
        return cls(
            throughput_per_s=float(_field(obj, "throughput_per_s", (int, float), where)),
            p50=_field(_field(obj, "latency_ns", dict, where), "p50", (int, type(None)), where),
            p50_ratio=_field(obj, "p50_ratio", ratio, where),
            throughput_ratio=_field(obj, "throughput_ratio", ratio, where),
            unavailable=_field(obj, "unavailable", (str, type(None)), where),
        )


@dataclass(frozen=True)
class Case:
    """One case of a run: its load, counts, throughput and latency."""

    name: str
    concurrency: int
    publishes_ok: int
    warmup_ok: int
    errors: dict[str, int]
    """Error kind -> count; empty when every publish succeeded."""
    delivered: int | None
    """Measured publishes the backend confirmed it holds; `None` when it cannot tell."""
    elapsed_s: float
    throughput_per_s: float
    latency_ns: Latency
    latency_total_ns: int
    """The sum of every measured latency."""
    floor: Floor | None
    """The case's floor, when the run measured floors."""

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    @property
    def publishes_with_warmup(self) -> int:
        """Every successful publish, warm-up included: what a whole-process figure (CPU, syscalls) covers."""
        return self.publishes_ok + self.warmup_ok

    @property
    def busy_share(self) -> float:
        """The share of the run its publishers spent inside publishes (1.0 = always publishing)."""
        return self.latency_total_ns / (self.elapsed_s * 1e9 * self.concurrency)

    @classmethod
    def parse(cls, obj: dict[str, Any]) -> Case:
        where = f"case {obj.get('name', '?')!r}"
        number = (int, float)
        return cls(
            name=_field(obj, "name", str, where),
            concurrency=_field(obj, "concurrency", int, where),
            publishes_ok=_field(obj, "publishes_ok", int, where),
            warmup_ok=_field(obj, "warmup_ok", int, where),
            errors=_field(obj, "errors", dict, where),
            delivered=_field(obj, "delivered", (int, type(None)), where),
            elapsed_s=float(_field(obj, "elapsed_s", number, where)),
            throughput_per_s=float(_field(obj, "throughput_per_s", number, where)),
            latency_ns=Latency.parse(_field(obj, "latency_ns", dict, where), f"{where}: latency_ns"),
            latency_total_ns=_field(obj, "latency_total_ns", int, where),
            floor=Floor.parse(obj["floor"], f"{where}: floor") if "floor" in obj else None,
        )


@dataclass(frozen=True)
class Summary:
    """A run's summary.json: its cases, in run order."""

    scenario: str
    cases: list[Case]

    def by_name(self) -> dict[str, Case]:
        return {case.name: case for case in self.cases}

    def case(self, name: str) -> Case:
        for case in self.cases:
            if case.name == name:
                return case
        raise SummaryError(f"no case {name!r} (cases: {', '.join(c.name for c in self.cases)})")

    def only(self) -> Case:
        """The run's one case (for runs of a single case)."""
        if len(self.cases) != 1:
            raise SummaryError(f"expected one case, found {len(self.cases)}")
        return self.cases[0]


def parse_summary(text: str) -> Summary:
    """A summary.json's text (or `taskbench run --format json`'s stdout), read."""
    obj = json.loads(text)
    cases = _field(obj, "cases", list, "summary")
    return Summary(scenario=_field(obj, "scenario", str, "summary"), cases=[Case.parse(c) for c in cases])


def read_summary(path: str | Path) -> Summary:
    """The summary.json at `path` (a run folder's, or a file of `--format json` output), read."""
    try:
        return parse_summary(Path(path).read_text())
    except SummaryError as e:
        raise SummaryError(f"{path}: {e}") from None


class _CaseFields(dict):  # dict[str, Any]: subscripting a base class needs Python 3.9
    """What a format string may name: the --set values, then the case's fields and properties."""

    def __init__(self, case: Case, values: dict[str, str]) -> None:
        super().__init__(values)
        self.case = case

    def __missing__(self, key: str) -> Any:
        return getattr(self.case, key)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="Print fields of a summary.json's cases, one line per case.")
    parser.add_argument("summary", help="summary.json, or - for `taskbench run --format json` on stdin")
    parser.add_argument("format", help="str.format string over the case's fields, e.g. '{name} {throughput_per_s}'")
    parser.add_argument("--case", action="append", help="only this case (repeatable; default: every case)")
    parser.add_argument("--no-errors", action="store_true", help="fail (exit 1) when a selected case had errors")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="a value the format may name")
    args = parser.parse_args(argv)
    values = dict(item.split("=", 1) for item in args.set)
    try:
        summary = parse_summary(sys.stdin.read()) if args.summary == "-" else read_summary(args.summary)
        cases = [summary.case(name) for name in args.case] if args.case else summary.cases
        for case in cases:
            if args.no_errors and case.errors:
                print(f"summary.py: case {case.name!r} had errors: {case.errors}", file=sys.stderr)
                return 1
            print(args.format.format_map(_CaseFields(case, values)))
    except (SummaryError, OSError, json.JSONDecodeError) as e:
        print(f"summary.py: {e}", file=sys.stderr)
        return 2
    except AttributeError as e:
        print(f"summary.py: the format names a field a case does not have: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
