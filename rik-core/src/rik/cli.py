"""The ``rik`` command: ``rik manage`` (remote_ikernel's flags and more) and ``rik plugins``."""

from __future__ import annotations

import importlib
import json
import shlex
import sys
from collections.abc import Sequence
from typing import Any

import click

from . import __version__
from .config import KernelConfig
from .errors import RikError, UsageError
from .models import Resources

# remote_ikernel took several values after one option (`--tunnel-hosts gw front`); click takes one value per
# occurrence. Options listed here are rewritten to one occurrence per value before click parses them.
_MULTI_VALUE_OPTIONS = ("--tunnel-hosts", "-t")


def _spread_multi_values(args: list[str]) -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            out.extend(args[i:])
            break
        if arg in _MULTI_VALUE_OPTIONS:
            i += 1
            values = []
            while i < len(args) and not args[i].startswith("-"):
                values.append(args[i])
                i += 1
            if not values:
                out.append(arg)  # let click report the missing value
            for value in values:
                out.extend([arg, value])
            continue
        out.append(arg)
        i += 1
    return out


class _Manage(click.Command):
    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, _spread_multi_values(list(args)))


class _LazyGroup(click.Group):
    lazy: dict[str, str] = {}  # command name -> module of rik that defines it (under the same name)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy and cmd_name not in self.commands:
            module = importlib.import_module(f".{self.lazy[cmd_name]}", __package__)
            self.add_command(getattr(module, cmd_name))
        return super().get_command(ctx, cmd_name)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, "-V", "--version", prog_name="rik")
def cli() -> None:
    """rik: all your Jupyter kernels, on all your machines, in one place.

    Install kernelspecs that start kernels over SSH (through gateway hosts) or inside interactive batch jobs
    (SLURM, Grid Engine, PBS, LSF) and connect them back to your notebook.
    """


@cli.command(cls=_Manage)
@click.option("-a", "--add", "action", flag_value="add", help="Add a kernel.")
@click.option("-s", "--show", "action", flag_value="show", help="Show rik kernels (all, or those NAMEd).")
@click.option("-d", "--delete", "action", flag_value="delete", help="Delete the kernels NAMEd.")
@click.option(
    "--import", "action", flag_value="import", help="Convert remote_ikernel's kernels (all, or NAMEd) to rik kernels."
)
@click.option(
    "-i",
    "--interface",
    default="local",
    show_default=True,
    help="ssh, slurm, sge, sge_qrsh, pbs, lsf, local, or a plugin's.",
)
@click.option(
    "-k",
    "--kernel_cmd",
    "--kernel-cmd",
    "kernel_cmd",
    metavar="CMD",
    help="Command that starts the kernel; must contain {connection_file}.",
)
@click.option("-n", "--name", metavar="NAME", help="Name shown in the kernel list (default: Python 3).")
@click.option("-l", "--language", default="python", show_default=True)
@click.option(
    "-x", "--host", metavar="[USER@]HOST[:PORT]", help="Host to run on (ssh) or submit host of the scheduler."
)
@click.option(
    "-t", "--tunnel-hosts", "tunnel_hosts", multiple=True, metavar="HOST...", help="Gateways to go through, in order."
)
@click.option("-c", "--cpus", type=click.IntRange(min=1), help="CPUs (slots) for the job.")
@click.option("--pe", metavar="PE", help="Grid Engine parallel environment (with --cpus).")
@click.option("--memory", metavar="SIZE", help="Memory for the job, e.g. 4G.")
@click.option("--walltime", metavar="TIME", help="Time limit for the job, e.g. 02:00:00.")
@click.option("--gpus", type=click.IntRange(min=0), help="GPUs for the job.")
@click.option("--queue", "--partition", "queue", metavar="QUEUE", help="Queue (partition for SLURM).")
@click.option("--account", metavar="ACCOUNT", help="Account or project to charge.")
@click.option("--job-name", default="rik", show_default=True, help="Name of the batch job.")
@click.option("--launch-cmd", metavar="CMD", help="Replace the scheduler's program (e.g. qrsh, or a full path).")
@click.option("--remote-launch-args", metavar="ARGS", help="Extra arguments for the scheduler's program.")
@click.option(
    "--workdir", metavar="DIR", help="Remote working directory (default: same path as here if it exists, else home)."
)
@click.option(
    "--remote-precmd", metavar="CMD", help="Command to run before the kernel (module load, conda activate...)."
)
@click.option("--ssh-config", metavar="FILE", help="An ssh_config file for this kernel's connections.")
@click.option(
    "--host-keys",
    type=click.Choice(["strict", "accept-new"]),
    default="strict",
    show_default=True,
    help="accept-new: trust a host's key on first use.",
)
@click.option("--askpass", metavar="PROGRAM", help="Program that answers password/passphrase/one-time-code prompts.")
@click.option(
    "--transport",
    type=click.Choice(["auto", "ipc", "tcp", "direct"]),
    default="auto",
    show_default=True,
    help="How the remote kernel binds: Unix sockets (ipc) or loopback TCP, tunnelled back; direct: the job runs "
    "on this machine and the kernel binds the frontend's ports itself (nothing tunnelled).",
)
@click.option("--interrupt-mode", type=click.Choice(["auto", "message", "signal"]), default="auto", show_default=True)
@click.option(
    "--queue-timeout", type=float, metavar="SECONDS", help="Give up (and cancel the job) if it has not started by then."
)
@click.option(
    "--grace",
    type=float,
    default=30.0,
    show_default=True,
    metavar="SECONDS",
    help="How long a remote kernel outlives a lost launcher.",
)
@click.option("-v", "--verbose", is_flag=True, help="Log the remote session's output.")
@click.option("--system", is_flag=True, help="Install for all users.")
@click.option("--user", "user_install", is_flag=True, help="Install for this user (the default).")
@click.option("--prefix", metavar="DIR", help="Install under DIR/share/jupyter/kernels.")
@click.option("--replace", is_flag=True, help="Overwrite a kernel of the same name.")
@click.option(
    "--provisioner",
    is_flag=True,
    help="Start the kernel through rik's jupyter_client kernel provisioner (pending while the job queues).",
)
@click.option("--dry-run", is_flag=True, help="Say what would be done, change nothing.")
@click.argument("names", nargs=-1)
@click.pass_context
def manage(ctx: click.Context, action: str | None, names: tuple[str, ...], **opts: Any) -> None:
    """Add, show or delete rik kernels (remote_ikernel's `manage` flags work as they did).

    \b
    rik manage --add --interface=ssh --host=login.example.org --name="Python 3"
    rik manage --add -i slurm -x login -t gateway --cpus 4 --walltime 2:00:00 --queue gpu --gpus 1
    rik manage --show [NAME...]
    rik manage --delete NAME...
    """
    from .manage import add_kernel, delete_kernels, import_kernels, show_kernels

    if opts["system"] and opts["prefix"]:
        raise UsageError("--system and --prefix are different locations: give one")
    if action == "add":
        if names:
            raise UsageError(f"unexpected argument(s) {' '.join(names)}: --add takes options only")
        add_kernel(opts, _manage_argv(ctx))
    elif action == "show":
        show_kernels(names)
    elif action == "delete":
        if not names:
            raise UsageError("--delete needs the NAME of the kernel(s) to delete (see `rik manage --show`)")
        delete_kernels(names, dry_run=opts["dry_run"])
    elif action == "import":
        import_kernels(names, dry_run=opts["dry_run"])
    else:
        raise UsageError("say what to do: --add, --show or --delete (see `rik manage --help`)")


def _manage_argv(ctx: click.Context) -> list[str]:
    return ["rik", "manage", *sys.argv[2:]] if len(sys.argv) > 2 else ["rik", "manage"]


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def plugins(as_json: bool) -> None:
    """List installed scheduler plugins, their interfaces and status."""
    from .plugins import PluginHost

    host = PluginHost()
    if as_json:
        click.echo(json.dumps([r.as_json() for r in host.records], indent=2))
        return
    for record in host.records:
        where = f"{record.distribution or '?'} {record.version or ''}".strip()
        click.echo(f"{record.name} ({where}): {record.status}" + (f" - {record.error}" if record.error else ""))
        for s in record.schedulers:
            opts = ", ".join(f"--{o}" for o in sorted(s.options)) or "no resource options"
            click.echo(f"  {s.name}: {s.help} [{opts}]")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: bad input is one line on stderr and a non-zero status, never a traceback."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        cli.main(args=args, prog_name="rik", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return int(exc.exit_code or 0)
    except click.exceptions.Abort:
        click.echo("rik: aborted", err=True)
        return 130
    except click.UsageError as exc:
        cmd = exc.ctx.command_path if exc.ctx else "rik"
        click.echo(f"{cmd}: error: {exc.format_message()} (see `{cmd} --help`)", err=True)
        return 2
    except UsageError as exc:
        click.echo(f"rik: error: {exc}", err=True)
        return 2
    except RikError as exc:
        click.echo(f"rik: error: {exc}", err=True)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


def resources_from(opts: dict[str, Any]) -> Resources:
    return Resources(
        cpus=opts.get("cpus"),
        pe=opts.get("pe"),
        memory=opts.get("memory"),
        walltime=opts.get("walltime"),
        gpus=opts.get("gpus"),
        queue=opts.get("queue"),
        account=opts.get("account"),
    )


def recreate_command(config: KernelConfig) -> str:
    """The ``rik manage --add`` command line that makes this kernel again."""
    args = ["rik", "manage", "--add", f"--interface={config.interface}", f"--name={config.name}"]
    args.append(f"--kernel_cmd={config.kernel_cmd}")
    if config.language != "python":
        args.append(f"--language={config.language}")
    if config.host:
        args.append(f"--host={config.host}")
    if config.tunnel_hosts:
        args.extend(["--tunnel-hosts", *config.tunnel_hosts])
    for name, value in config.resources.given().items():
        args.append(f"--{name}={value}")
    simple = {
        "job_name": ("--job-name", "rik"),
        "launch_cmd": ("--launch-cmd", None),
        "launch_args": ("--remote-launch-args", None),
        "workdir": ("--workdir", None),
        "precmd": ("--remote-precmd", None),
        "ssh_config": ("--ssh-config", None),
        "host_keys": ("--host-keys", "strict"),
        "askpass": ("--askpass", None),
        "transport": ("--transport", "auto"),
        "interrupt_mode": ("--interrupt-mode", "auto"),
        "queue_timeout": ("--queue-timeout", None),
        "grace": ("--grace", 30.0),
    }
    for attr, (flag, default) in simple.items():
        value = getattr(config, attr)
        if value != default:
            args.append(f"{flag}={value:g}" if isinstance(value, float) else f"{flag}={value}")
    if config.verbose:
        args.append("--verbose")
    return shlex.join(args)


# Commands that live in their own modules, imported only when they run or are listed (`rik --help`): `rik manage`
# and `rik --version` start without them.
_LazyGroup.lazy.update(doctor="doctor", ps="lifecycle", gc="lifecycle")
