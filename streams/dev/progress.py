"""A progress bar while the CLI follows submissions to their final events."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from streams.client import Client, FinalEvent, Submission


def wait_with_progress(
    client: Client,
    subs: Sequence[Submission],
    labels: Mapping[str, str],
    *,
    timeout_s: float,
    show: bool,
) -> dict[str, FinalEvent]:
    """``client.wait`` with a bar on stderr (only when ``show``): done/total, elapsed, last image."""
    with Progress(
        TextColumn("[bold]processing"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.description}"),
        console=Console(stderr=True),
        disable=not show,
        transient=False,
    ) as progress:
        task = progress.add_task("", total=len(subs))

        def on_final(sub: Submission, final: FinalEvent) -> None:
            progress.update(task, advance=1, description=f"{labels.get(sub.image_id, sub.image_id)} {final.status}")

        return client.wait(subs, timeout_s=timeout_s, on_final=on_final)
