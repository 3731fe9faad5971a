"""The machine a benchmark ran on: its CPUs and load average before and after the run, printed
beside the figures. These machines are shared: a figure measured while others were busy reads
slower than the same code on an idle machine, and the load says how busy it was."""

from __future__ import annotations

import os
from dataclasses import dataclass, field


def _load_average() -> tuple[float, float, float]:
    return os.getloadavg()


@dataclass
class MachineLoad:
    """The load average when a benchmark started and when it ended."""

    cpus: int = field(default_factory=lambda: os.cpu_count() or 1)
    before: tuple[float, float, float] = field(default_factory=_load_average)
    after: tuple[float, float, float] | None = None

    def finished(self) -> MachineLoad:
        self.after = _load_average()
        return self

    def line(self) -> str:
        """``machine  2 CPUs; load average (1 min, 5 min) 2.9, 2.1 before; 4.1, 3.0 after``."""
        after = self.after or _load_average()
        return (
            f"machine            {self.cpus} CPUs; load average (1 min, 5 min)"
            f" {self.before[0]:.1f}, {self.before[1]:.1f} before;"
            f" {after[0]:.1f}, {after[1]:.1f} after"
        )
