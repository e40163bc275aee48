"""``rik doctor``: check a kernel's setup step by step."""

from __future__ import annotations

import click


@click.command()
@click.argument("kernels", nargs=-1)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def doctor(kernels: tuple[str, ...], as_json: bool) -> None:
    """Check rik kernels (all, or those named): hosts, keys, forwarding, scheduler, kernel command."""
    raise click.UsageError("rik doctor is not available yet")
