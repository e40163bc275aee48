"""The one table of ``rik manage`` options: flag, default, choices, help.

It drives the click decorators of ``rik manage`` (cli.py), the command line that recreates a kernel
(:func:`rik.config.recreate_command`), the defaults of :class:`rik.config.KernelConfig` and the checks of its
loader and validator. This module imports nothing else of rik, so every other module can import it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["MANAGE_OPTIONS", "Option", "by_field", "default"]


@dataclass(frozen=True)
class Option:
    """One option of ``rik manage``.

    :param flags: the command-line spellings, short ones first (``("-i", "--interface")``).
    :param dest: the name click passes it under.
    :param field: the :class:`~rik.config.KernelConfig` attribute it sets (``None``: it only steers the command,
        like ``--dry-run``); a resource option sets ``KernelConfig.resources.<field>``.
    :param kind: ``str``, ``int``, ``float``, ``flag`` (on/off) or ``list`` (one or more words).
    """

    flags: tuple[str, ...]
    dest: str
    help: str
    field: str | None = None
    kind: str = "str"
    default: Any = None
    choices: tuple[str, ...] | None = None
    metavar: str | None = None
    minimum: float | None = None
    above_minimum: bool = False  # the value must be greater than ``minimum``, not equal
    resource: bool = False
    always: bool = False  # always written by recreate_command, even at its default
    show_default: bool = False

    @property
    def flag(self) -> str:
        """The long spelling users read in messages (``--remote-precmd``)."""
        return next(f for f in self.flags if f.startswith("--"))

    def check(self, value: Any) -> str | None:
        """Why ``value`` is not acceptable for this option, or ``None``."""
        if value is None:
            return None
        if self.choices is not None and value not in self.choices:
            return f"{self.flag} must be one of {', '.join(self.choices)}, not {value!r}"
        if self.minimum is not None and isinstance(value, (int, float)):
            if self.above_minimum and value <= self.minimum:
                return f"{self.flag} must be more than {self.minimum:g}, not {value:g}"
            if value < self.minimum:
                return f"{self.flag} must be at least {self.minimum:g}, not {value:g}"
        return None


_O = Option

#: Every option of ``rik manage``, in the order ``rik manage --help`` lists them.
MANAGE_OPTIONS: tuple[Option, ...] = (
    # -- what to do ----------------------------------------------------------------------------------------------
    _O(("-a", "--add"), "add", "Add a kernel.", kind="flag"),
    _O(("-s", "--show"), "show", "Show rik kernels (all, or those NAMEd: kernel name or display name).", kind="flag"),
    _O(("-d", "--delete"), "delete", "Delete the kernels NAMEd.", kind="flag"),
    _O(("--import",), "import_", "Convert remote_ikernel's kernels (all, or those NAMEd) to rik kernels.", kind="flag"),
    # -- the kernel ----------------------------------------------------------------------------------------------
    _O(
        ("-i", "--interface"),
        "interface",
        "ssh, slurm, sge, sge_qrsh, pbs, lsf, local, or a plugin's (see `rik plugins`).",
        field="interface",
        default="local",
        always=True,
        show_default=True,
    ),
    _O(
        ("-k", "--kernel_cmd", "--kernel-cmd"),
        "kernel_cmd",
        "Command that starts the kernel; must contain {connection_file} "
        "[default: this Python's ipykernel for local, python3 -m ipykernel_launcher elsewhere].",
        field="kernel_cmd",
        metavar="CMD",
        always=True,
    ),
    _O(
        ("-n", "--name"),
        "name",
        "Name shown in the kernel list.",
        field="name",
        default="Python 3",
        metavar="NAME",
        always=True,
        show_default=True,
    ),
    _O(
        ("-l", "--language"),
        "language",
        "The kernel's language, as front ends show it and pick syntax highlighting by.",
        field="language",
        default="python",
        show_default=True,
    ),
    _O(
        ("-x", "--host"),
        "host",
        "Host to run on (ssh) or submit host of the scheduler.",
        field="host",
        metavar="[USER@]HOST[:PORT]",
    ),
    _O(
        ("-t", "--tunnel-hosts"),
        "tunnel_hosts",
        "Gateways to go through, in order.",
        field="tunnel_hosts",
        kind="list",
        default=(),
        metavar="HOST...",
    ),
    # -- resources -----------------------------------------------------------------------------------------------
    _O(("-c", "--cpus"), "cpus", "CPUs (slots) for the job.", field="cpus", kind="int", minimum=1, resource=True),
    _O(("--pe",), "pe", "Grid Engine parallel environment (with --cpus).", field="pe", metavar="PE", resource=True),
    _O(
        ("--memory",),
        "memory",
        "Memory for the job: a whole number with K, M, G or T (binary: 1G = 1024M), e.g. 4G or 512M.",
        field="memory",
        metavar="SIZE",
        resource=True,
    ),
    _O(
        ("--walltime",),
        "walltime",
        "Time limit for the job: H:MM:SS (SLURM also takes its own forms: minutes, MM:SS, D-HH[:MM[:SS]]).",
        field="walltime",
        metavar="TIME",
        resource=True,
    ),
    _O(("--gpus",), "gpus", "GPUs for the job.", field="gpus", kind="int", minimum=0, resource=True),
    _O(
        ("--queue", "--partition"),
        "queue",
        "Queue (partition for SLURM).",
        field="queue",
        metavar="QUEUE",
        resource=True,
    ),
    _O(("--account",), "account", "Account or project to charge.", field="account", metavar="ACCOUNT", resource=True),
    # -- the job -------------------------------------------------------------------------------------------------
    _O(("--job-name",), "job_name", "Name of the batch job.", field="job_name", default="rik", show_default=True),
    _O(
        ("--launch-cmd",),
        "launch_cmd",
        "Replace the scheduler's program (e.g. qrsh, or a full path).",
        field="launch_cmd",
        metavar="CMD",
    ),
    _O(
        ("--remote-launch-args",),
        "remote_launch_args",
        "Extra arguments for the scheduler's program.",
        field="launch_args",
        metavar="ARGS",
    ),
    _O(
        ("--workdir",),
        "workdir",
        "Remote working directory, absolute or ~/... (default: same path as here if it exists, else home).",
        field="workdir",
        metavar="DIR",
    ),
    _O(
        ("--remote-precmd",),
        "remote_precmd",
        "Command to run before the kernel (module load, conda activate...), one line.",
        field="precmd",
        metavar="CMD",
    ),
    # -- ssh -----------------------------------------------------------------------------------------------------
    _O(
        ("--ssh-config",),
        "ssh_config",
        "An ssh_config file for this kernel's connections.",
        field="ssh_config",
        metavar="FILE",
    ),
    _O(
        ("--host-keys",),
        "host_keys",
        "accept-new: trust a host's key on first use.",
        field="host_keys",
        default="strict",
        choices=("strict", "accept-new"),
        show_default=True,
    ),
    _O(
        ("--askpass",),
        "askpass",
        "Program on this machine that answers password/passphrase/one-time-code prompts.",
        field="askpass",
        metavar="PROGRAM",
    ),
    # -- the kernel's connection ---------------------------------------------------------------------------------
    _O(
        ("--transport",),
        "transport",
        "How the remote kernel binds: Unix sockets (ipc) or loopback TCP, tunnelled back; direct: the job runs "
        "on this machine and the kernel binds the frontend's ports itself (nothing tunnelled); auto: ipc for "
        "ipykernel, else tcp.",
        field="transport",
        default="auto",
        choices=("auto", "ipc", "tcp", "direct"),
        show_default=True,
    ),
    _O(
        ("--interrupt-mode",),
        "interrupt_mode",
        "How the front end interrupts the kernel: an interrupt_request message, or SIGINT sent by rik to the "
        "remote kernel; auto: message for ipykernel, else signal.",
        field="interrupt_mode",
        default="auto",
        choices=("auto", "message", "signal"),
        show_default=True,
    ),
    _O(
        ("--queue-timeout",),
        "queue_timeout",
        "Give up (and cancel the job) if it has not started by then.",
        field="queue_timeout",
        kind="float",
        metavar="SECONDS",
        minimum=0,
        above_minimum=True,
    ),
    _O(
        ("--grace",),
        "grace",
        "How long a remote kernel outlives its last connection while idle (never past the job's walltime).",
        field="grace",
        kind="float",
        default=3600.0,
        metavar="SECONDS",
        minimum=0,
        show_default=True,
    ),
    _O(("-v", "--verbose"), "verbose", "Log the remote session's output.", field="verbose", kind="flag", default=False),
    # -- where the kernelspec goes, and how --------------------------------------------------------------------
    _O(("--system",), "system", "Install for all users.", kind="flag"),
    _O(("--user",), "user_install", "Install for this user (the default).", kind="flag"),
    _O(("--prefix",), "prefix", "Install under DIR/share/jupyter/kernels.", metavar="DIR"),
    _O(("--replace",), "replace", "Overwrite a kernel of the same name.", kind="flag"),
    _O(
        ("--provisioner",),
        "provisioner",
        "Start the kernel through rik's jupyter_client kernel provisioner (pending while the job queues).",
        kind="flag",
    ),
    _O(
        ("--dry-run",),
        "dry_run",
        "Say what would be done (and the kernel.json --add would write), change nothing.",
        kind="flag",
    ),
    _O(("--json",), "as_json", "With --show: machine-readable output.", kind="flag"),
)

_BY_FIELD = {o.field: o for o in MANAGE_OPTIONS if o.field}
ACTIONS: tuple[Option, ...] = MANAGE_OPTIONS[:4]


def by_field(name: str) -> Option:
    """The option that sets ``KernelConfig.<name>`` (or ``KernelConfig.resources.<name>``)."""
    return _BY_FIELD[name]


def default(name: str) -> Any:
    """The default of the option that sets ``KernelConfig.<name>``."""
    return _BY_FIELD[name].default


def markdown_table() -> str:
    """The option table as the Markdown table in docs/cli.md (a test keeps the two the same)."""
    rows = ["| option | default | choices | what it does |", "| --- | --- | --- | --- |"]
    for opt in MANAGE_OPTIONS:
        flags = ", ".join(
            f"`{f}`" + (f" {opt.metavar}" if opt.metavar and i == len(opt.flags) - 1 else "")
            for i, f in enumerate(opt.flags)
        )
        if opt.kind == "flag":
            default_text = ""
        elif opt.kind == "list":
            default_text = "none"
        else:
            default_text = (
                ""
                if opt.default is None
                else f"`{opt.default:g}`"
                if isinstance(opt.default, float)
                else f"`{opt.default}`"
            )
        choices = ", ".join(f"`{c}`" for c in opt.choices) if opt.choices else ""
        text = opt.help.replace("|", "\\|")
        rows.append(f"| {flags} | {default_text} | {choices} | {text} |")
    return "\n".join(rows) + "\n"
