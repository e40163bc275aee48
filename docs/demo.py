"""Run one cell through a rik kernel with jupyter_client, as a notebook would, and print what it returned."""

from __future__ import annotations

import sys
import time

from jupyter_client.manager import start_new_kernel


def main(kernel_name: str) -> int:
    started = time.monotonic()
    km, kc = start_new_kernel(kernel_name=kernel_name, startup_timeout=120)
    try:
        ready = time.monotonic() - started
        code = "import socket, sys; print(f'6 * 7 = {6 * 7} from {socket.gethostname()} (Python {sys.version.split()[0]})')"
        out: list[str] = []
        reply = kc.execute_interactive(
            code, timeout=60, output_hook=lambda m: out.append(m["content"].get("text", "")) if m["msg_type"] == "stream" else None
        )
        print(f"kernel {kernel_name!r} ready in {ready:.2f} s; cell status {reply['content']['status']}:")
        print("".join(out).strip())
        return 0 if reply["content"]["status"] == "ok" else 1
    finally:
        kc.stop_channels()
        km.shutdown_kernel()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
