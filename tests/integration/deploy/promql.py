"""What a PromQL expression reads: its series selectors and the labels it groups or joins by.

Enough of PromQL for checking a dashboard or a rules file against a scrape: metric names with
their label matchers, and the label names in ``by``/``without``/``on``/``ignoring`` clauses
and in Grafana legends. Syntax itself is promtool's job.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

_SELECTOR = re.compile(r"\b(streamproc_[a-zA-Z0-9_]*)\s*(\{[^}]*\})?")
_MATCHER = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_LEGEND = re.compile(r"\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}")
# Labels Prometheus adds to every scraped series, and the histogram buckets' own.
TARGET_LABELS = frozenset({"job", "instance", "namespace", "pod"})


@dataclass(frozen=True)
class Selector:
    metric: str
    matchers: tuple[tuple[str, str, str], ...]

    def matches(self, name: str, labels: Mapping[str, str]) -> bool:
        if name != self.metric:
            return False
        for label, op, value in self.matchers:
            if label in TARGET_LABELS:
                continue  # set by the scrape, not by the processor
            actual = labels.get(label, "")
            hit = re.fullmatch(value, actual) is not None if "~" in op else actual == value
            if hit != (op in ("=", "=~")):
                return False
        return True

    def __str__(self) -> str:
        inner = ",".join(f'{label}{op}"{value}"' for label, op, value in self.matchers)
        return f"{self.metric}{{{inner}}}" if inner else self.metric


def selectors(expr: str) -> list[Selector]:
    found = []
    for match in _SELECTOR.finditer(expr):
        matchers = tuple(_MATCHER.findall(match.group(2) or ""))
        found.append(Selector(match.group(1), matchers))
    return found


def grouping_labels(expr: str, legends: Iterable[str] = ()) -> set[str]:
    labels = {
        label.strip()
        for clause in _GROUPING.findall(expr)
        for label in clause.split(",")
        if label.strip()
    }
    for legend in legends:
        labels.update(_LEGEND.findall(legend))
    return labels
