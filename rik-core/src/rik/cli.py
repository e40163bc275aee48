"""The ``rik`` command: ``rik manage`` (remote_ikernel's flags and more) and ``rik plugins``.

A new command: define it here with ``@cli.command()``, or in its own module and add it to :data:`LAZY_COMMANDS`
(imported only when it runs or ``rik --help`` lists it).
"""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

import click
from click.core import ParameterSource
from click.shell_completion import CompletionItem

from . import __version__
from .errors import RikError, UsageError
from .options import ACTIONS, MANAGE_OPTIONS, Option

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


def _version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    """``rik --version``: rik-core's version and each installed plugin distribution's (no plugin is imported)."""
    if not value or ctx.resilient_parsing:
        return
    click.echo(f"rik, version {__version__}")
    click.echo(f"rik-core {__version__}")
    for (name, version), eps in sorted(_plugin_distributions().items()):
        click.echo(f"{name} {version} (plugin {', '.join(sorted(eps))})")
    ctx.exit()


def _plugin_distributions() -> dict[tuple[str, str], list[str]]:
    """``{(distribution, version): [entry point names]}`` of the ``rik`` entry point group (a few ms: read as the
    launcher reads them, without importlib.metadata)."""
    from .plugins import rik_entry_points

    found: dict[tuple[str, str], list[str]] = {}
    for ep in rik_entry_points():
        found.setdefault((ep.dist.name, ep.dist.version or "?"), []).append(ep.name)
    return found


@click.group(
    cls=_LazyGroup,
    invoke_without_command=True,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110},
)
@click.option(
    "-V",
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_version,
    help="Show the version of rik-core and of each installed plugin, and exit.",
)
@click.pass_context
def cli(ctx: click.Context) -> None:
    """rik: all your Jupyter kernels, on all your machines, in one place.

    Install kernelspecs that start kernels over SSH (through gateway hosts) or inside interactive batch jobs
    (SLURM, Grid Engine, PBS, LSF) and connect them back to your notebook.

    Shell completion (commands, options, kernel names): add `eval "$(_RIK_COMPLETE=bash_source rik)"` to
    ~/.bashrc (zsh: `zsh_source` in ~/.zshrc; fish: `_RIK_COMPLETE=fish_source rik | source`).
    """
    if ctx.invoked_subcommand is None:  # bare `rik`: the help, not an error
        click.echo(ctx.get_help())


def _complete_kernel_names(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    from .kernelspecs import complete_kernel_names  # not imported for `rik --version` and the like

    return complete_kernel_names(ctx, param, incomplete)


def _complete_interfaces(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    try:
        from .plugins import PluginHost

        schedulers = [s for r in PluginHost().records for s in r.schedulers]
    except Exception:
        return []
    return [CompletionItem(s.name, help=s.help) for s in schedulers if s.name.startswith(incomplete)]


def _click_option(opt: Option) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The click option for one row of the option table."""
    kwargs: dict[str, Any] = {"help": opt.help, "show_default": opt.show_default}
    if opt.metavar:
        kwargs["metavar"] = opt.metavar
    if opt.kind == "flag":
        kwargs["is_flag"] = True
    elif opt.kind == "list":
        kwargs["multiple"] = True
    elif opt.kind == "int":
        kwargs["type"] = click.IntRange(min=int(opt.minimum)) if opt.minimum is not None else int
    elif opt.kind == "float":
        kwargs["type"] = (
            click.FloatRange(min=opt.minimum, min_open=opt.above_minimum) if opt.minimum is not None else float
        )
    if opt.choices is not None:
        kwargs["type"] = click.Choice(opt.choices)
    if opt.default is not None and opt.kind not in ("flag", "list"):
        kwargs["default"] = opt.default
    if opt.dest == "interface":
        kwargs["shell_complete"] = _complete_interfaces
    return click.option(*opt.flags, opt.dest, **kwargs)


def _table_options(f: Callable[..., Any]) -> Callable[..., Any]:
    for opt in reversed(MANAGE_OPTIONS):
        f = _click_option(opt)(f)
    return f


# Options that go with an action other than --add (everything else only makes sense with --add).
_OTHER_ACTIONS_TAKE = {"show": {"as_json"}, "delete": {"dry_run"}, "import_": {"dry_run"}}


def _takes(action: str, dest: str) -> bool:
    if action == "add":
        return dest != "as_json"
    return dest in _OTHER_ACTIONS_TAKE[action]


@cli.command(cls=_Manage)
@_table_options
@click.argument("names", nargs=-1, metavar="[NAME]...", shell_complete=_complete_kernel_names)
@click.pass_context
def manage(ctx: click.Context, names: tuple[str, ...], **opts: Any) -> None:
    """Add, show, delete or import rik kernels (remote_ikernel's `manage` flags work as they did).

    \b
    rik manage --add --interface=ssh --host=login.example.org --name="Python 3"
    rik manage --add -i slurm -x login -t gateway --cpus 4 --walltime 2:00:00 --queue gpu --gpus 1
    rik manage --show [NAME...] [--json]
    rik manage --delete NAME...
    rik manage --import [NAME...] [--dry-run]
    """
    from .manage import add_kernel, delete_kernels, import_kernels, show_kernels

    actions = [opt for opt in ACTIONS if opts.pop(opt.dest)]
    if len(actions) > 1:
        given = " and ".join(opt.flag for opt in actions)
        raise UsageError(f"{given} exclude each other: give one of --add, --show, --delete, --import")
    if not actions:
        raise UsageError("say what to do: --add, --show, --delete or --import (see `rik manage --help`)")
    action = actions[0].dest
    if action != "add":
        for opt in MANAGE_OPTIONS:
            if opt in ACTIONS or _takes(action, opt.dest):
                continue
            if ctx.get_parameter_source(opt.dest) == ParameterSource.COMMANDLINE:
                goes_with = [a.flag for a in ACTIONS if _takes(a.dest, opt.dest)]
                raise UsageError(f"{opt.flag} goes with {' or '.join(goes_with)}, not with {actions[0].flag}")
    if action == "add":
        if names:
            raise UsageError(f"unexpected argument(s) {' '.join(names)}: --add takes options only")
        if opts["as_json"]:
            raise UsageError("--json goes with --show, not with --add")
        locations = [
            flag
            for flag, given in (
                ("--system", opts["system"]),
                ("--user", opts["user_install"]),
                ("--prefix", opts["prefix"] is not None),
            )
            if given
        ]
        if len(locations) > 1:
            raise UsageError(f"{' and '.join(locations)} are different locations: give one")
        add_kernel(opts, _manage_argv())
    elif action == "show":
        show_kernels(names, as_json=opts["as_json"])
    elif action == "delete":
        if not names:
            raise UsageError("--delete needs the NAME of the kernel(s) to delete (see `rik manage --show`)")
        delete_kernels(names, dry_run=opts["dry_run"])
    else:
        import_kernels(names, dry_run=opts["dry_run"])


_ARGV: list[str] = []  # the command line main() runs, for the kernelspec's record of how it was made


def _manage_argv() -> list[str]:
    args = _ARGV or sys.argv[1:]
    return ["rik", *args]


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
    """Entry point: bad input is one line on stderr (``rik: error: ...``) and status 2; a failure one line and
    status 1; never a traceback."""
    args = list(sys.argv[1:] if argv is None else argv)
    _ARGV[:] = args
    try:
        cli.main(args=args, prog_name="rik", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return int(exc.exit_code or 0)
    except click.exceptions.Abort:
        click.echo("rik: aborted", err=True)
        return 130
    except click.UsageError as exc:
        cmd = exc.ctx.command_path if exc.ctx else "rik"
        if cmd == "rik" and args and args[0] in _LazyGroup.lazy.keys() | cli.commands.keys():
            cmd = f"rik {args[0]}"
        click.echo(f"rik: error: {exc.format_message()} (see `{cmd} --help`)", err=True)
        return 2
    except UsageError as exc:
        click.echo(f"rik: error: {exc}", err=True)
        return 2
    except RikError as exc:
        if str(exc):  # an empty message: the lines above already said what failed
            click.echo(f"rik: error: {exc}", err=True)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


# Commands that live in their own modules (command name -> module of rik that defines it under the same name),
# imported only when they run or are listed (`rik --help`): `rik manage` and `rik --version` start without them.
LAZY_COMMANDS = {"doctor": "doctor", "ps": "lifecycle", "gc": "lifecycle", "attach": "lifecycle", "stop": "lifecycle"}
_LazyGroup.lazy.update(LAZY_COMMANDS)
