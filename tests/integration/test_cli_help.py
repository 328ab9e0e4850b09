"""`anonlens --help` puts the main job first and fits one screen; every help text names the extras
as they are installed (issue 30)."""

import re

from typer.testing import CliRunner

from anonlens.cli.main import PANELS, app

runner = CliRunner()


def _help(*args, columns=80):
    r = runner.invoke(app, [*args, "--help"], env={"COLUMNS": str(columns), "TERM": "dumb"})
    assert r.exit_code == 0, r.output
    return r.output


def test_the_commands_are_grouped_the_release_workflow_first_and_fit_one_screen():
    text = _help()
    panels = [line for line in text.splitlines() if line.startswith("╭─ ")]
    assert [p[3:].split(" ─")[0] for p in panels] == ["Options", *PANELS]
    first = text.index("Release workflow")
    for name in ("demo", "anonymize", "inspect", "check", "report", "serve"):
        assert text.index(f"│ {name} ") > first
    assert text.index("│ serve ") < text.index("Assess and configure")
    assert len(text.strip().splitlines()) <= 45  # one screen
    listed = {name for items in PANELS.values() for name, _ in items}
    registered = {c.name for c in app.registered_commands} | {g.name for g in app.registered_groups}
    assert listed == registered  # every command has its panel, none is listed that does not exist
    for line in text.splitlines():
        if re.match(r"│ [a-z-]+ {2,}", line):
            assert len(line.rstrip()) <= 80


def test_every_help_text_names_its_extra_as_pip_installs_it():
    commands = [c.name for c in app.registered_commands]
    seen = 0
    for name in commands:
        text = " ".join(_help(name, columns=300).split())
        assert "install 'anonlens'" not in text, name  # markup swallowed "[video]"
        for extra in re.findall(r"pip install '([^']*)'", text):
            seen += 1
            assert re.fullmatch(r"anonlens\[[a-z,]+\]", extra), (name, extra)
    assert seen >= 3  # anonymize's videos and Ray, score's Ray, train's tensorboard


def test_listings_never_cut_a_name_at_any_width():
    from anonlens import list_detectors
    from anonlens.metrics import METRICS
    from anonlens.operators import OPERATORS

    expected = {"detectors": list_detectors(), "operators": OPERATORS.names(), "metrics": METRICS.names()}
    for columns in (40, 80, 160):
        for command, names in expected.items():
            r = runner.invoke(app, [command], env={"COLUMNS": str(columns), "TERM": "dumb"})
            assert r.exit_code == 0 and "…" not in r.output, (command, columns, r.output[:400])
            for name in names:
                assert re.search(rf"(^|[│ ]){re.escape(name)}([ │]|$)", r.output, re.M), (command, columns, name)


def test_report_on_a_folder_without_scores_says_the_exact_command(tmp_path):
    from tests.helpers import encode, noise

    src = tmp_path / "in"
    src.mkdir()
    (src / "a.png").write_bytes(encode(noise(64, 64)))
    out = tmp_path / "out"
    assert runner.invoke(app, ["anonymize", str(src), "-o", str(out), "-q", "--on-empty", "full"]).exit_code == 0
    r = runner.invoke(app, ["report", str(out)])
    assert r.exit_code == 2 and len(r.output.strip().splitlines()) == 1 and "Traceback" not in r.output
    assert f"anonlens score -a {out} --original {src} -o {out}-scores" in r.output and f"anonlens report {out}-scores" in r.output
    r = runner.invoke(app, ["report", str(src)])
    assert r.exit_code == 2 and "no scores.csv here" in r.output and len(r.output.strip().splitlines()) == 1
