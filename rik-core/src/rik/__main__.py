"""``python -m rik``: the launcher a rik kernelspec runs (``rik`` itself is the management command)."""

from __future__ import annotations

import sys


def _run() -> int:
    if not any(arg.startswith("--kernel-config") for arg in sys.argv[1:]):  # not a kernelspec: the `rik` CLI
        from .cli import main as cli_main

        return cli_main(sys.argv[1:])
    from .launch.here import exec_local

    exec_local(sys.argv[1:])  # a plain local kernel: the launcher becomes the kernel (returns for anything else)
    from .launch.early import start

    pre = start(sys.argv[1:])  # with its master up, a remote kernel's session starts before the rest of rik loads
    from .launch.entry import main

    return main(pre=pre)


if __name__ == "__main__":
    sys.exit(_run())
