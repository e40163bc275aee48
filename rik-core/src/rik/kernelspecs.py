"""Kernelspecs on disk: written atomically where Jupyter looks, found and removed by name in any case."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import KernelConfig
from .errors import RikError

__all__ = ["InstalledKernel", "find_kernels", "install", "kernels_dir", "remove"]

METADATA_KEY = "rik"
PROVISIONER_NAME = "rik-provisioner"  # entry point in group jupyter_client.kernel_provisioners


def kernels_dir(*, system: bool = False, prefix: str | None = None) -> Path:
    """Where a new kernelspec goes: the user's Jupyter data dir, the system path, or ``PREFIX/share/jupyter``."""
    from jupyter_core.paths import SYSTEM_JUPYTER_PATH, jupyter_data_dir

    if prefix:
        return Path(prefix) / "share" / "jupyter" / "kernels"
    if system:
        return Path(SYSTEM_JUPYTER_PATH[0]) / "kernels"
    return Path(jupyter_data_dir()) / "kernels"


@dataclass(frozen=True)
class InstalledKernel:
    name: str
    path: Path
    spec: dict[str, Any]

    @property
    def config(self) -> KernelConfig | None:
        """The kernel's rik settings (``None``: not made by rik, e.g. by remote_ikernel). Settings that cannot be
        read (a missing or mistyped one) are a :class:`~rik.UsageError` saying which; settings from a newer rik
        are kept (:meth:`KernelConfig.unknown_settings`)."""
        meta = self.spec.get("metadata", {}).get(METADATA_KEY)
        if isinstance(meta, dict) and "config" in meta:
            return KernelConfig.from_json(meta["config"])
        return None

    def remake_hint(self) -> str:
        """What to do about settings that cannot be read: the command that made the kernel, with ``--replace``,
        when kernel.json recorded it; else delete and add again."""
        argv = self.manage_argv
        if argv and len(argv) > 2 and argv[1] == "manage" and "--add" in argv:
            again = shlex.join([*argv, *([] if "--replace" in argv else ["--replace"])])
            return f"make it again with `{again}`"
        return f"delete it with `rik manage --delete {self.name}` and add it again"

    @property
    def manage_argv(self) -> list[str] | None:
        meta = self.spec.get("metadata", {}).get(METADATA_KEY, {})
        argv = meta.get("manage_argv") if isinstance(meta, dict) else None
        return list(argv) if isinstance(argv, list) else None


def build_spec(
    config: KernelConfig, display_name: str, manage_argv: list[str] | None, *, provisioner: bool = False
) -> dict[str, Any]:
    """The kernel.json of a rik kernel: the universal argv form every front end runs.

    ``{connection_file}`` is its own argv word after ``-f``: front ends that rewrite a Python kernel's argv (older
    VS Code releases drop the word before ``{connection_file}`` and append ``--f=FILE --shell=PORT ...``) then
    remove ``-f`` and nothing of rik's configuration. ``provisioner``: jupyter_client starts the kernel through
    rik's kernel provisioner (rik.provisioner); the argv stays, for front ends that ignore provisioners.
    """
    # Front ends substitute {name} in every argv word: the kernel command's own {connection_file} must survive
    # to the remote side, so braces inside the JSON are written as JSON escapes.
    encoded = re.sub(r"\{(\w+)\}", r"\\u007b\1\\u007d", config.dumps())
    spec: dict[str, Any] = {
        "argv": [sys.executable, "-m", "rik", "--kernel-config", encoded, "-f", "{connection_file}"],
        "display_name": display_name,
        "language": config.language,
        "interrupt_mode": config.effective_interrupt_mode(),
        "metadata": {
            METADATA_KEY: {
                "config": config.to_json(),
                "manage_argv": manage_argv,
            },
            "debugger": False,
        },
    }
    if provisioner:
        spec["metadata"]["kernel_provisioner"] = {"provisioner_name": PROVISIONER_NAME, "config": {}}
    return spec


def install(name: str, spec: dict[str, Any], *, destination: Path, replace: bool) -> Path:
    """Write ``destination/name/kernel.json`` atomically: the kernel appears whole or not at all."""
    target = destination / name
    try:
        destination.mkdir(parents=True, exist_ok=True)
        if target.exists() and not replace:
            raise RikError(f"a kernel named {name!r} already exists in {destination}: pass --replace to overwrite it")
        staging = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=destination))
    except PermissionError:
        raise RikError(f"cannot write to {destination}: permission denied (try --user, or --prefix DIR)") from None
    except OSError as exc:
        raise RikError(f"cannot write to {destination}: {exc.strerror or exc}") from None
    old: Path | None = None
    try:
        os.chmod(staging, 0o755)
        with open(staging / "kernel.json", "w", encoding="utf-8") as fh:
            json.dump(spec, fh, indent=1)
            fh.write("\n")
        if target.exists():
            old = destination / f".{name}.old.{os.getpid()}"
            os.rename(target, old)
        os.rename(staging, target)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        if old is not None and not target.exists():
            os.rename(old, target)
        raise RikError(f"cannot write kernel {name!r} to {destination}: {exc.strerror or exc}") from None
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return target


def find_kernels() -> dict[str, InstalledKernel]:
    """Every kernelspec Jupyter can see, by lower-cased name (the first on Jupyter's path wins).

    The folders are KernelSpecManager's (Jupyter's ``kernels`` path, then IPython's), read here: importing
    jupyter_client would import its whole client stack, two thirds of the time ``rik manage --show`` took.
    """
    from jupyter_core.paths import jupyter_path

    folders = [Path(p) for p in jupyter_path("kernels")]
    folders.append(Path(os.environ.get("IPYTHONDIR") or Path.home() / ".ipython") / "kernels")
    found: dict[str, InstalledKernel] = {}
    for folder in folders:
        try:
            entries = sorted(os.listdir(folder))
        except OSError:
            continue
        for entry in entries:
            name = entry.lower()
            if name in found:
                continue
            try:
                spec = json.loads((folder / entry / "kernel.json").read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            found[name] = InstalledKernel(name, folder / entry, spec)
    return found


def is_rik(kernel: InstalledKernel) -> bool:
    return METADATA_KEY in kernel.spec.get("metadata", {}) or kernel.name.startswith("rik_")


def lookup(name: str, *, display_names: bool = False) -> InstalledKernel:
    """The rik kernel called ``name`` (any case); with ``display_names``, also the one whose display name it is.
    No such kernel is a :class:`~rik.RikError` listing the rik kernels there are."""
    kernels = find_kernels()
    kernel = kernels.get(name.strip().lower())
    if kernel is not None and is_rik(kernel):
        return kernel
    if display_names:
        wanted = name.strip().casefold()
        matches = [
            k for k in kernels.values() if is_rik(k) and str(k.spec.get("display_name", "")).casefold() == wanted
        ]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise RikError(f"{name!r} is the display name of several kernels: {', '.join(k.name for k in matches)}")
    candidates = sorted(k for k, v in kernels.items() if is_rik(v))
    hint = f" (rik kernels: {', '.join(candidates)})" if candidates else " (no rik kernels are installed)"
    raise RikError(f"no rik kernel named {name!r}{hint}")


def complete_kernel_names(ctx: Any, param: Any, incomplete: str) -> list[Any]:
    """Shell completion of installed rik kernel names, for a click argument's ``shell_complete`` (``rik manage
    --show/--delete NAME``, ``rik doctor NAME``...); the display name is the completion's help."""
    from click.shell_completion import CompletionItem

    try:
        kernels = find_kernels()
    except Exception:  # completion must never print a traceback into the user's shell
        return []
    return [
        CompletionItem(name, help=str(k.spec.get("display_name", "")))
        for name, k in sorted(kernels.items())
        if is_rik(k) and name.startswith(incomplete.lower())
    ]


def remove(kernel: InstalledKernel) -> None:
    """Remove a kernelspec directory: renamed away first so that it vanishes at once."""
    graveyard = kernel.path.parent / f".{kernel.path.name}.removed.{os.getpid()}"
    try:
        os.rename(kernel.path, graveyard)
    except PermissionError:
        raise RikError(f"cannot remove {kernel.path}: permission denied (a --system kernel needs root)") from None
    except OSError as exc:
        raise RikError(f"cannot remove {kernel.path}: {exc.strerror or exc}") from None
    shutil.rmtree(graveyard, ignore_errors=True)
