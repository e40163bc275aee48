"""rik's kernel provisioner (``rik manage --add --provisioner``) through jupyter_client's kernel managers, as
jupyter_server (JupyterLab, Notebook 7) and nbclient use them."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest
from frontend_helpers import COMPUTE, VIA_FRONT, interrupt_sleep, kernelspec, run, slurm_jobs
from helpers import add_kernel, assert_nothing_left
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from kernels import pid_alive
from rik.provisioner import RikProvisioner


def test_manage_provisioner_writes_the_same_kernel_with_rik_provisioner(rik, jupyter_home: Path) -> None:
    rik("manage", "--add", "-i", "local", "-n", "Plain", check=True)
    out = rik("manage", "--add", "-i", "local", "-n", "Prov", "--provisioner", check=True).out
    assert "rik_local_prov" in out
    plain, prov = kernelspec(jupyter_home, "rik_local_plain"), kernelspec(jupyter_home, "rik_local_prov")
    assert prov["metadata"]["kernel_provisioner"] == {"provisioner_name": "rik-provisioner", "config": {}}
    assert "kernel_provisioner" not in plain["metadata"]
    # The same configuration and launcher: only the name differs. Front ends that ignore provisioners run the argv.
    assert prov["metadata"]["rik"]["config"] == {**plain["metadata"]["rik"]["config"], "name": "Prov"}
    assert prov["argv"][:4] == plain["argv"][:4] and prov["argv"][-2:] == ["-f", "{connection_file}"]
    assert prov["interrupt_mode"] == plain["interrupt_mode"]
    # jupyter_client hides a kernelspec whose provisioner is not installed: this one is listed.
    assert "rik_local_prov" in KernelSpecManager().get_all_specs()
    shown = rik("manage", "--show", "rik_local_prov", check=True).out
    assert "provisioner: rik-provisioner" in shown and shown.rstrip().endswith("--provisioner")


@pytest.mark.parametrize("mode", ["message", "signal"])
def test_a_local_kernel_through_the_provisioner(rik, jupyter_home: Path, mode: str) -> None:
    rik("manage", "--add", "-i", "local", "-n", "Prov", "--provisioner", "--interrupt-mode", mode, check=True)

    async def session() -> None:
        km = AsyncKernelManager(kernel_name="rik_local_prov")
        await km.start_kernel()
        assert isinstance(km.provisioner, RikProvisioner)
        kc = km.client()
        kc.start_channels()
        try:
            await kc.wait_for_ready(timeout=60)
            launcher = km.provisioner.pid
            first = int(await run(kc, "import os; print(os.getpid())"))
            await run(kc, "x = 41")
            assert await interrupt_sleep(kc, km.interrupt_kernel) == "KeyboardInterrupt"
            assert (await run(kc, "print(x + 1)")).strip() == "42"
            connection_file = km.connection_file
            ports = km.ports
            await km.restart_kernel()
            await kc.wait_for_ready(timeout=60)
            # A restart: a new launcher and kernel, the same connection file and ports.
            assert km.provisioner.pid != launcher and not pid_alive(launcher)
            assert int(await run(kc, "import os; print(os.getpid())")) != first
            assert (await run(kc, "print('x' in globals())")).strip() == "False"
            assert km.connection_file == connection_file and km.ports == ports
            launcher = km.provisioner.pid
        finally:
            kc.stop_channels()
            await km.shutdown_kernel()
        # A shutdown: launcher gone, connection file removed.
        assert not pid_alive(launcher)
        assert not os.path.exists(connection_file)

    asyncio.run(session())


def test_a_failed_start_raises_with_the_launchers_reason(rik, jupyter_home: Path) -> None:
    rik("manage", "--add", "-i", "local", "-n", "Broken", "--provisioner", check=True)
    # `rik manage` refuses a local kernel whose program does not exist: make it go missing afterwards.
    spec_file = jupyter_home / "data" / "kernels" / "rik_local_broken" / "kernel.json"
    spec_file.write_text(spec_file.read_text().replace(sys.executable + " -m ipykernel", "/nonexistent/python3 -m ipykernel"))

    async def start() -> str:
        km = AsyncKernelManager(kernel_name="rik_local_broken")
        with pytest.raises(RuntimeError) as failed:
            await km.start_kernel()
        return str(failed.value)

    message = asyncio.run(start())
    # The shell's own words differ between dash versions ("not found" or "No such file or directory").
    assert "/nonexistent/python3" in message, message
    assert "not found" in message or "No such file" in message, message


def test_a_slurm_kernel_through_jupyter_server(rik, cluster, jupyter_home: Path, tmp_path: Path) -> None:
    """jupyter_server's kernel manager: run, interrupt, restart (a fresh kernel in the same job), shut down."""
    from jupyter_server.services.kernels.kernelmanager import AsyncMappingKernelManager

    name = add_kernel(rik, cluster, "-i", "slurm", *VIA_FRONT, "-n", "Prov", "--provisioner")

    async def session() -> None:
        mkm = AsyncMappingKernelManager(root_dir=str(tmp_path))
        kid = await mkm.start_kernel(kernel_name=name)
        km = mkm.get_kernel(kid)
        assert isinstance(km.provisioner, RikProvisioner)
        kc = km.client()
        kc.start_channels()
        try:
            await kc.wait_for_ready(timeout=60)
            host, job = (await run(kc, "import os, socket; print(socket.gethostname(), os.environ['SLURM_JOB_ID'])")).split()
            assert host in COMPUTE and job in slurm_jobs(cluster)
            assert await interrupt_sleep(kc, lambda: mkm.interrupt_kernel(kid)) == "KeyboardInterrupt"
            await run(kc, "x = 41")
            await (await mkm.restart_kernel(kid))  # resolves on the new kernel's kernel_info reply
            await kc.wait_for_ready(timeout=60)
            host2, job2 = (await run(kc, "import os, socket; print(socket.gethostname(), os.environ['SLURM_JOB_ID'])")).split()
            assert (host2, job2) == (host, job)  # restarted in place: no second job, no queue wait
            assert (await run(kc, "print('x' in globals())")).strip() == "False"  # a fresh namespace
            assert job in slurm_jobs(cluster)
        finally:
            kc.stop_channels()
            await mkm.shutdown_kernel(kid)
        assert job2 not in slurm_jobs(cluster)

    asyncio.run(session())
    assert_nothing_left(cluster, hosts=COMPUTE)
