"""How ``rik doctor`` reads the answers to a scheduler plugin's questions (``rik_build_doctor_queries``); the
questions themselves run against the real schedulers in tests/integration/test_doctor.py."""

from __future__ import annotations

import shlex

import pytest
from rik import SchedulerQuery
from rik.doctor.probe import Done
from rik.doctor.report import Report
from rik.doctor.target import scheduler_query

PARTITION = SchedulerQuery(
    what="partition gpu",
    option="queue",
    argv=("sinfo", "-h", "-p", "gpu"),
    empty_is_missing=True,
    listing=("sinfo", "-h", "-o", "%P"),
)
QUEUE = SchedulerQuery(what="queue q", option="queue", argv=("qstat", "-Q", "q"), missing="unknown queue")
SCHEDD = SchedulerQuery(what="the schedd", argv=("condor_q", "-totals"))


def ask(query: SchedulerQuery, answers: dict[str, Done]) -> dict:
    """The one check doctor reports for ``query`` when each command answers as given (by its program)."""

    def script(text: str) -> Done:
        argv = shlex.split(text.split("exec ", 1)[1].split(" </dev/null", 1)[0])
        return answers[" ".join(argv)]

    report = Report("k", "K", "/k")
    scheduler_query(report, query, script, "front")
    (check,) = report.checks
    return check.as_json()


def test_an_existing_value_is_ok() -> None:
    check = ask(PARTITION, {"sinfo -h -p gpu": Done(0, "gpu\n")})
    assert (check["check"], check["status"], check["message"]) == ("queue", "ok", "partition gpu on front: exists")


def test_no_output_where_that_means_no_is_a_problem_that_names_the_values_that_exist() -> None:
    check = ask(PARTITION, {"sinfo -h -p gpu": Done(0, ""), "sinfo -h -o %P": Done(0, "debug*\nbig\n")})
    assert check["status"] == "problem" and "partition gpu on front: does not exist" in check["message"]
    assert check["fix"] == "make the kernel again with --queue one of: debug, big (rik manage --add ... --replace)"


@pytest.mark.parametrize(
    ("answer", "status"),
    [
        (Done(1, "qstat: Unknown queue q"), "problem"),  # the scheduler says no
        (Done(1, "qstat: cannot connect to server"), "skipped"),  # something else went wrong: cannot tell
        (Done(-1, "", timed_out=True), "skipped"),
    ],
)
def test_a_failure_is_a_no_only_when_the_scheduler_says_so(answer: Done, status: str) -> None:
    check = ask(QUEUE, {"qstat -Q q": answer})
    assert check["status"] == status, check
    if status == "skipped":
        assert check["message"].startswith("queue q on front: could not check")


def test_a_question_about_the_scheduler_itself_fails_as_a_problem() -> None:
    assert (
        ask(SCHEDD, {"condor_q -totals": Done(0, "Total for query: 0 jobs")})["message"]
        == "the schedd on front: answers"
    )
    check = ask(SCHEDD, {"condor_q -totals": Done(1, "-- Failed to fetch ads from: <10.0.0.1:9618> : front")})
    assert check["check"] == "scheduler" and check["status"] == "problem"
    assert "does not answer" in check["message"] and "Failed to fetch ads" in check["message"]


def test_forwarding_is_told_from_sshds_words_or_a_greeting() -> None:
    from rik.doctor.chain import forwarding_result
    from rik.doctor.probe import Done

    # doctor's own master: sshd's reason, from the master's log
    assert forwarding_result(Done(1, "channel 2: open failed: administratively prohibited: open failed")) == "prohibited"
    assert forwarding_result(Done(1, "channel 2: open failed: connect failed: Connection refused")) == "allowed"
    # a shared master: the greeting of the sshd the channel reached
    assert forwarding_result(Done(255, "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u10\r\n")) == "allowed"
    assert forwarding_result(Done(255, "Session open refused by peer")) == "Session open refused by peer"
    assert forwarding_result(Done(-1, "", timed_out=True)) == "no answer"
