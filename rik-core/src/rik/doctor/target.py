"""On the submit host (or the kernel's host, or this machine): the scheduler's programs exist, what the scheduler
plugin asks about (its partition, queue, parallel environment or account: ``rik_build_doctor_queries``) checks
out, the login shell starts with the pre-command, the kernel's program exists there and starts (``import
ipykernel``), the working directory exists."""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Callable, Sequence

from ..config import Endpoint, KernelConfig
from ..errors import RikError
from ..models import LaunchCommand, SchedulerInfo, SchedulerQuery
from ..plugins import PluginHost
from .probe import (
    CHECK_TIMEOUT,
    KERNEL_TIMEOUT,
    Done,
    Remote,
    exec_script,
    kernel_probe,
    login_script,
    program_script,
    run,
)
from .report import OK, PROBLEM, SKIPPED, Report

__all__ = ["target_checks"]

#: Resource options whose values name things on the cluster (the others are amounts).
NAMED_OPTIONS = ("queue", "pe", "account")


def target_checks(
    report: Report,
    plugins: PluginHost,
    config: KernelConfig,
    scheduler: SchedulerInfo | None,
    command: LaunchCommand | None,
    cancel: tuple[str, ...],
    remote: Remote | None,
    chain: Sequence[Endpoint],
) -> None:
    submit = config.endpoint()
    where = str(submit) if submit else "this machine"
    has_job = bool(command and command.argv)

    def script(text: str, timeout: float = CHECK_TIMEOUT) -> Done:
        if remote is not None and submit is not None:
            return remote.script(submit, chain, text, timeout)
        return run(["/bin/sh", "-s"], env=dict(os.environ), timeout=timeout, stdin=text)

    if command and command.argv and scheduler is not None:
        for role, argv in (("scheduler", command.argv), ("cancel", cancel)):
            if not argv:
                continue
            done = script(program_script(argv[0]))
            if done.code == 0:
                report.add(role, where, OK, f"{role} command {argv[0]} on {where}: {done.last_line()}")
            elif done.timed_out:
                report.add(role, where, PROBLEM, f"{role} command {argv[0]} on {where}: no answer", None)
            else:
                report.add(
                    role,
                    where,
                    PROBLEM,
                    f"{role} command {argv[0]} not found on {where}",
                    "make it available in the PATH of non-interactive ssh sessions there, or give its full path "
                    "with --launch-cmd",
                )
        scheduler_checks(report, plugins, config, script, where)
    shell_check(report, config, script, where)
    kernel_checks(report, config, script, where, has_job)
    workdir_check(report, config, script, where)


def scheduler_checks(
    report: Report, plugins: PluginHost, config: KernelConfig, script: Callable[[str], Done], where: str
) -> None:
    """What the scheduler's plugin asks about (``rik_build_doctor_queries``); a named resource (queue, parallel
    environment, account) it has no question for is said to be unchecked."""
    try:
        queries = plugins.build_doctor_queries(config.request())
    except RikError as exc:
        report.add("scheduler", where, PROBLEM, f"rik doctor cannot ask the scheduler: {exc}", "see `rik plugins`")
        return
    asked = {query.option for query in queries}
    for option, value in config.resources.given().items():
        if option in NAMED_OPTIONS and option not in asked:
            report.add(option, where, SKIPPED, f"--{option} {value}: rik doctor cannot ask {config.interface} about it")
    for query in queries:
        scheduler_query(report, query, script, where)


def scheduler_query(report: Report, query: SchedulerQuery, script: Callable[[str], Done], where: str) -> None:
    done = script(exec_script(query.argv))
    label = f"{query.what} on {where}"
    said = f"{shlex.join(query.argv)}: {done.last_line() if done.out.strip() else 'nothing'}"
    check = query.option or "scheduler"
    yes = done.code == 0 and (done.out.strip() or not query.empty_is_missing)
    if query.option is None:
        if yes:
            report.add(check, where, OK, f"{label}: answers")
        else:
            reason = f"no answer within {CHECK_TIMEOUT:g} s" if done.timed_out else said
            report.add(
                check,
                where,
                PROBLEM,
                f"{label}: does not answer ({reason})",
                "check that the scheduler runs and that this host may submit jobs to it",
            )
        return
    if yes:
        report.add(check, where, OK, f"{label}: exists")
        return
    no = done.code == 0 or (query.missing is not None and re.search(query.missing, done.out, re.I) is not None)
    if done.timed_out or not no:
        report.add(check, where, SKIPPED, f"{label}: could not check ({said})")
        return
    known = ""
    if query.listing:
        names = script(exec_script(query.listing))
        if names.code == 0 and names.out.strip():
            known = f"one of: {', '.join(word.rstrip('*') for word in names.out.split()[:12])}"
    report.add(
        check,
        where,
        PROBLEM,
        f"{label}: does not exist ({said})",
        f"make the kernel again with --{query.option} {known or 'NAME'} (rik manage --add ... --replace)",
    )


def shell_check(report: Report, config: KernelConfig, script: Callable[[str], Done], where: str) -> None:
    done = script(login_script(config.precmd, "true"))
    what = "login shell" + (" with the pre-command" if config.precmd else "")
    if done.code == 0:
        report.add("shell", where, OK, f"{what} starts on {where}")
    elif done.timed_out:
        report.add(
            "shell",
            where,
            PROBLEM,
            f"{what} on {where} did not finish within {CHECK_TIMEOUT:g} s",
            "a startup file (~/.profile, ~/.bash_profile...) or --remote-precmd waits for input or hangs",
        )
    else:
        report.add(
            "shell",
            where,
            PROBLEM,
            f"{what} fails on {where}: {done.last_line()}",
            "fix the startup files (~/.profile, ~/.bash_profile...) there"
            + (" or --remote-precmd" if config.precmd else ""),
        )


def kernel_checks(report: Report, config: KernelConfig, script: Callable[..., Done], where: str, has_job: bool) -> None:
    note = " (the submit host: the job's node normally has the same software)" if has_job else ""
    words = config.kernel_argv()
    program = words[0]
    probe_cmd = shlex.join(["/bin/sh", "-c", 'command -v "$1" || exit 127', "rik-doctor", program])
    done = script(login_script(config.precmd, f"exec {probe_cmd}"))
    if done.code != 0:
        report.add(
            "kernel",
            where,
            PROBLEM,
            f"kernel program {program} not found on {where}{note} in the login shell"
            + (" after the pre-command" if config.precmd else ""),
            "install it there, give its full path in --kernel-cmd, or load it with --remote-precmd",
        )
        return
    report.add("kernel", where, OK, f"kernel program {program} on {where}{note}: {done.last_line()}")
    probe, package = kernel_probe(words)
    if probe is None:
        report.add("kernel-start", where, SKIPPED, f"{program} starts: not checked (rik tests ipykernel and IRkernel)")
        return
    done = script(login_script(config.precmd, "exec " + shlex.join(probe)), KERNEL_TIMEOUT)
    if done.code == 0:
        report.add("kernel-start", where, OK, f"{program} starts and loads {package} on {where}")
    else:
        reason = f"no answer within {KERNEL_TIMEOUT:g} s" if done.timed_out else done.last_line()
        report.add(
            "kernel-start",
            where,
            PROBLEM,
            f"{program} cannot load {package} on {where}: {reason}",
            f"install {package} for that {program} (or point --kernel-cmd at one that has it)",
        )


def workdir_check(report: Report, config: KernelConfig, script: Callable[[str], Done], where: str) -> None:
    if not config.workdir:
        done = script("cd && pwd")
        home = done.last_line() if done.code == 0 else "your home"
        report.add(
            "workdir",
            where,
            OK,
            f"no --workdir: the kernel starts in the notebook server's directory if {where} has it, else in {home}",
        )
        return
    done = script(f"cd {shlex.quote(config.workdir)}")
    if done.code == 0:
        report.add("workdir", where, OK, f"working directory {config.workdir} exists on {where}")
    else:
        report.add(
            "workdir",
            where,
            PROBLEM,
            f"working directory {config.workdir} does not exist on {where} (or is not yours to enter)",
            "create it there, or make the kernel again with another --workdir",
        )
