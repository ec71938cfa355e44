"""Progress reporting for long work: stage, step, losses and ETA on stderr (rich).

Library functions take a :class:`Reporter`; the base class prints nothing, so scripts stay quiet
unless they ask. The CLI passes a :class:`RichReporter` (a context manager).
"""

from __future__ import annotations


class Reporter:
    """Receives progress events; the base class ignores them."""

    def stage(self, name: str, total: int) -> None:
        """A new stage of ``total`` steps starts."""

    def update(self, step: int, **metrics: float) -> None:
        """``step`` steps of the current stage are done; ``metrics`` are shown beside."""

    def message(self, text: str) -> None:
        """A one-line note (e.g. which preset was chosen)."""


class RichReporter(Reporter):
    """A rich progress bar on stderr: stage, step/total, metrics, elapsed and ETA."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.console = Console(stderr=True)
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[metrics]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        )
        self._task: int | None = None

    def __enter__(self) -> RichReporter:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def stage(self, name: str, total: int) -> None:
        if self._task is not None:
            self._progress.stop_task(self._task)
        self._task = self._progress.add_task(name, total=total, metrics="")

    def update(self, step: int, **metrics: float) -> None:
        if self._task is None:
            return
        text = "  ".join(f"{k} {v:.4g}" for k, v in metrics.items())
        self._progress.update(self._task, completed=step, metrics=text)

    def message(self, text: str) -> None:
        self.console.print(text)
