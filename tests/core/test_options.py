"""The one option table: it makes the click options and the page that documents them."""

from __future__ import annotations

from pathlib import Path

from rik.cli import manage
from rik.options import MANAGE_OPTIONS, markdown_table

DOC = Path(__file__).resolve().parents[2] / "docs" / "cli.md"


def test_every_table_row_is_a_click_option_with_its_default_and_choices() -> None:
    params = {p.name: p for p in manage.params}
    for opt in MANAGE_OPTIONS:
        param = params[opt.dest]
        assert tuple(param.opts) + tuple(param.secondary_opts) == opt.flags, opt.dest
        if opt.kind not in ("flag", "list") and opt.default is not None:
            assert param.default == opt.default, opt.dest
        if opt.choices:
            assert tuple(param.type.choices) == opt.choices, opt.dest
    assert set(params) == {o.dest for o in MANAGE_OPTIONS} | {"names"}


def test_docs_cli_md_has_the_table_as_it_is() -> None:
    text = DOC.read_text()
    begin, end = "<!-- options table: begin -->\n", "<!-- options table: end -->"
    documented = text[text.index(begin) + len(begin) : text.index(end)]
    assert documented == markdown_table(), "docs/cli.md is out of date: paste rik.options.markdown_table() into it"


def test_manage_and_migrate_do_not_import_the_cli() -> None:
    """The option table, not cli.py, is what they share: no cli -> manage -> cli or migrate -> cli circle."""
    import subprocess
    import sys

    code = "import sys, rik.manage, rik.migrate, rik.config; print('rik.cli' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout) == (0, "False\n"), done.stderr
