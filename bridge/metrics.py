"""A minimal Prometheus text-format registry: counters and gauges with labels, nothing more."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

Labels = tuple[tuple[str, str], ...]


class Counter:
    def __init__(self, name: str, help_text: str, kind: str = "counter") -> None:
        self.name = name
        self.help = help_text
        self.kind = kind
        self.values: dict[Labels, float] = defaultdict(float)

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        self.values[tuple(sorted(labels.items()))] += amount

    def set(self, value: float, **labels: str) -> None:
        self.values[tuple(sorted(labels.items()))] = value


class Registry:
    def __init__(self) -> None:
        self._metrics: dict[str, Counter] = {}

    def counter(self, name: str, help_text: str) -> Counter:
        return self._metrics.setdefault(name, Counter(name, help_text))

    def gauge(self, name: str, help_text: str) -> Counter:
        return self._metrics.setdefault(name, Counter(name, help_text, "gauge"))

    def render(self) -> str:
        return "".join(_render(m) for m in self._metrics.values())


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _render(metric: Counter) -> str:
    lines: Iterable[str] = [f"# HELP {metric.name} {metric.help}", f"# TYPE {metric.name} {metric.kind}"]
    for labels, value in sorted(metric.values.items()):
        text = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
        lines = [*lines, f"{metric.name}{{{text}}} {value:g}" if text else f"{metric.name} {value:g}"]
    return "\n".join(lines) + "\n"
