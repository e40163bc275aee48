"""``rik ps`` and ``rik gc``: running rik kernels, and clean-up after launchers that vanished."""

from __future__ import annotations

import click


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def ps(as_json: bool) -> None:
    """List running rik kernels (from their state files, checked live)."""
    raise click.UsageError("rik ps is not available yet")


@click.command()
@click.option("--dry-run", is_flag=True, help="Say what would be cleaned, change nothing.")
def gc(dry_run: bool) -> None:
    """End kernels and jobs whose launcher is gone, on every host, and say what was done."""
    raise click.UsageError("rik gc is not available yet")
