"""What a run shows in the terminal: a config summary, a progress bar over epochs and
batches with the running loss, and a table of the final metrics (rich)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from dq import metric_keys as keys
from dq.data_records import DatasetMeta
from dq.spec import RunSpec


def config_summary(spec: RunSpec, meta: DatasetMeta, device: str, params: tuple[int, int], run_dir: Path) -> Table:
    total, trainable = params
    table = Table(title="dq run", show_header=False, title_justify="left")
    table.add_column(style="bold cyan")
    table.add_column(overflow="fold")  # long run directories wrap instead of being cut
    rows = {
        "dataset": f"{meta.name} ({meta.modality}, {meta.num_classes} classes, input {tuple(meta.input_shape)})",
        "model": f"{spec.model.name} ({trainable:,} trainable of {total:,} parameters)",
        "optimizer": f"{spec.optimizer.name} lr={spec.optimizer.lr:g}, scheduler {spec.scheduler.name}",
        "trainer": f"{spec.trainer.epochs} epochs, batch {spec.trainer.batch_size}, device {device}",
        "groups": ", ".join(meta.group_names) if meta.group_names else "none",
        "seed": str(spec.seed),
        "run dir": str(run_dir),
    }
    for key, value in rows.items():
        table.add_row(key, value)
    return table


def metrics_table(metrics: Mapping[str, float], title: str = "test metrics") -> Table:
    """One row per metric; a metric with a bootstrap interval (``<key>/ci_low`` and
    ``<key>/ci_high``) shows it beside its value, ``0.812 [0.790, 0.833]``, in one row."""
    table = Table(title=title, title_justify="left")
    table.add_column("metric", style="cyan")
    table.add_column("value", justify="right")
    for key, value in metrics.items():
        if _is_interval_bound(key, metrics):
            continue  # shown in its metric's row
        low, high = metrics.get(keys.ci_low(key)), metrics.get(keys.ci_high(key))
        if low is not None and high is not None:
            table.add_row(key, f"{value:.3f} [{low:.3f}, {high:.3f}]")
        else:
            table.add_row(key, f"{value:,}" if isinstance(value, int) else f"{value:,.4f}")
    return table


def _is_interval_bound(key: str, metrics: Mapping[str, float]) -> bool:
    """``<key>/ci_low`` or ``<key>/ci_high`` whose ``<key>`` has both bounds (shown in its row)."""
    base = keys.interval_of(key)
    return base is not None and base in metrics and keys.ci_low(base) in metrics and keys.ci_high(base) in metrics


class RichProgress:
    """Two bars (epochs, batches of the current epoch) and the running training loss."""

    def __init__(self, console: Console) -> None:
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[info]}"),
            console=console,
            transient=False,
            refresh_per_second=4,  # redrawing steals the GIL from the training thread
        )
        self.epochs_task = None
        self.batches_task = None

    def __enter__(self) -> RichProgress:
        self.progress.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.progress.stop()

    def start_epoch(self, epoch: int, epochs: int, batches: int) -> None:
        if self.epochs_task is None:
            self.epochs_task = self.progress.add_task("epochs", total=epochs, info="")
            self.batches_task = self.progress.add_task("batches", total=batches, info="")
        self.progress.reset(self.batches_task, total=batches, description=f"epoch {epoch}", info="")

    def advance(self, batches_done: int, running_loss: float) -> None:
        self.progress.update(self.batches_task, completed=batches_done, info=f"loss {running_loss:.4f}")

    def end_epoch(self, record: Mapping[str, float]) -> None:
        accuracy, loss = (
            record.get(keys.val(keys.ACCURACY), float("nan")),
            record.get(keys.val(keys.LOSS), float("nan")),
        )
        info = f"val acc {accuracy:.4f}  val loss {loss:.4f}"
        self.progress.update(self.epochs_task, advance=1, info=info)
