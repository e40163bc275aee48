"""The parsing helpers plugins call: walltimes as each scheduler reads them, memory sizes schedulers accept."""

from __future__ import annotations

import pytest
from rik import UsageError
from rik.helpers import hms, memory_amount, normal_memory, normal_walltime, walltime_seconds


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30", 30 * 60),  # minutes
        ("30:00", 30 * 60),  # MM:SS
        ("1:30", 90),
        ("1:00:00", 3600),
        ("100:00:00", 100 * 3600),
        ("2-12", 2 * 86400 + 12 * 3600),  # D-HH
        ("2-12:30", 2 * 86400 + 12 * 3600 + 30 * 60),  # D-HH:MM
        ("2-12:30:15", 2 * 86400 + 12 * 3600 + 30 * 60 + 15),  # D-HH:MM:SS
        (" 5 ", 300),
    ],
)
def test_slurm_style_reads_what_slurm_documents(text: str, seconds: int) -> None:
    assert walltime_seconds(text, "slurm") == seconds


@pytest.mark.parametrize("text", ["30:00", "90", "2-12", "1:60:00", "1:00:60", "", "1h", "-1:00:00"])
def test_hms_style_takes_only_h_mm_ss(text: str) -> None:
    with pytest.raises(UsageError) as refused:
        walltime_seconds(text, "hms")
    assert str(refused.value) == f"bad --walltime {text!r}: use H:MM:SS, e.g. 0:30:00 or 48:00:00"


def test_hms_style_reads_hours_past_a_day() -> None:
    assert walltime_seconds("48:00:00", "hms") == 48 * 3600
    assert walltime_seconds("0:00:20", "hms") == 20


def test_the_default_style_is_unchanged_for_plugins_written_against_rik_0_1() -> None:
    assert walltime_seconds("90") == 5400 and walltime_seconds("2:00") == 7200 and walltime_seconds("1:00:30") == 3630
    assert walltime_seconds("1-00:00:00") == 86400


def test_every_style_reads_the_stored_form_alike() -> None:
    for seconds in (20, 1800, 3600, 5400, 60 * 3600 + 30 * 60 + 5):
        stored = hms(seconds)
        assert {walltime_seconds(stored, s) for s in ("hms", "slurm", "legacy")} == {seconds}


def test_normal_walltime_refuses_zero() -> None:
    assert normal_walltime("30:00", "slurm") == "0:30:00"
    with pytest.raises(UsageError, match="longer than 0"):
        normal_walltime("0:00:00")


@pytest.mark.parametrize(
    ("text", "normal"),
    [("4G", "4G"), ("0.5G", "512M"), ("8GiB", "8G"), ("8GB", "8G"), ("8g", "8G"), ("2048M", "2G"), ("100", "100M"),
     ("1.5T", "1536G"), ("1000000M", "1000000M"), ("512 MiB", "512M")],
)
def test_memory_becomes_a_whole_amount_of_one_unit(text: str, normal: str) -> None:
    assert normal_memory(text) == normal
    amount, unit = memory_amount(text)
    assert amount == int(amount) and f"{int(amount)}{unit}" == normal


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0G", "bad --memory '0G': give more than 0, e.g. 4G or 512M"),
        ("0.3M", "bad --memory '0.3M': that is 307.2K, not a whole number of K"),
        ("lots", "bad --memory 'lots': use a whole number with K, M, G or T, e.g. 4G or 512M"),
        ("-1G", "bad --memory '-1G': use a whole number with K, M, G or T, e.g. 4G or 512M"),
        ("4P", "bad --memory '4P': use a whole number with K, M, G or T, e.g. 4G or 512M"),
    ],
)
def test_memory_that_no_scheduler_takes_is_refused(text: str, message: str) -> None:
    with pytest.raises(UsageError) as refused:
        memory_amount(text)
    assert str(refused.value) == message
