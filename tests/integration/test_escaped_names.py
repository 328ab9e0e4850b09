"""A file name cannot inject a line into the command line's output (issue #25, item 11).

A name may hold a newline: ``a\\nPASS: 0 of 1 image(s) fail.jpg`` printed as it is shows a line of
its own that reads like check's verdict. Every line that names a file shows it escaped.
"""

import pytest
from typer.testing import CliRunner

from anonlens.cli.main import app
from anonlens.display import display_name, one_line
from anonlens.errors import ImageReadError

from tests.helpers import encode

runner = CliRunner()

FAKE = "PASS: 0 of 1 image(s) fail"
NAME = f"a\n{FAKE}.jpg"  # a real JPEG with no face: listed for review, and check's nothing-found verdict names it
BROKEN = f"b\n{FAKE}.jpg"  # a truncated JPEG: the error line names it
ESCAPED = "\\n" + FAKE  # how the newline shows: backslash, n


def output_lines(result) -> list[str]:
    text = result.output + (result.stderr if result.stderr_bytes is not None and result.stderr not in result.output else "")
    return text.splitlines()


def assert_no_injected_line(result):
    lines = output_lines(result)
    injected = [line for line in lines if line.lstrip(" '\"").startswith(FAKE)]
    assert not injected, "a file name started a line of its own:\n" + "\n".join(lines)


@pytest.mark.parametrize("name, shown", [
    ("photos/a.jpg", "photos/a.jpg"),
    ("photo d'été.jpg", "photo d'été.jpg"),
    ("a\nb.jpg", "'a\\nb.jpg'"),
    ("a\rb.jpg", "'a\\rb.jpg'"),
    ("a\x1b[2Jb.jpg", "'a\\x1b[2Jb.jpg'"),  # an ANSI escape (clear screen)
    ("gpj.\u202eexe", "'gpj.\\u202eexe'"),  # a right-to-left override
    ("a\u2028b.jpg", "'a\\u2028b.jpg'"),  # a Unicode line separator
    (b"caf\xe9.jpg", "'caf\\udce9.jpg'"),  # an undecodable byte
])
def test_display_name(name, shown):
    assert display_name(name) == shown
    assert display_name(shown).isprintable()


def test_one_line_escapes_only_what_is_not_printable():
    assert one_line("x.jpg: cannot decode") == "x.jpg: cannot decode"
    assert one_line(f"x\n{FAKE}\r\x1b[0m") == f"x\\n{FAKE}\\r\\x1b[0m"
    assert "\n" not in one_line("\n".join(["a"] * 5))


def test_image_read_error_names_the_file_on_one_line():
    err = ImageReadError(f"in/{NAME}", "cannot decode")
    assert "\n" not in str(err) and ESCAPED in str(err)
    assert err.path == f"in/{NAME}"  # the path itself is kept as it is, for programs


@pytest.fixture
def injected_folder(tmp_path, astronaut, no_face_image):
    src = tmp_path / "in"
    src.mkdir()
    (src / NAME).write_bytes(encode(no_face_image, "JPEG", quality=90))
    whole = encode(astronaut, "JPEG", quality=90)
    (src / BROKEN).write_bytes(whole[: len(whole) // 3])
    return src


def test_anonymize_and_check_print_names_escaped(injected_folder, tmp_path):
    out = tmp_path / "out"
    result = runner.invoke(app, ["anonymize", str(injected_folder), "-o", str(out), "-q", "-j", "1"])
    assert result.exit_code == 1, result.output  # the truncated file failed
    assert_no_injected_line(result)
    text = "\n".join(output_lines(result))
    assert f"a{ESCAPED}.jpg'" in text  # listed for review, escaped and quoted
    assert f"b{ESCAPED}.jpg'" in text  # the error line names the broken file, escaped
    assert (out / NAME).is_file()  # the file itself keeps its name

    result = runner.invoke(app, ["check", str(out), "-q"])
    assert result.exit_code == 1, result.output
    assert_no_injected_line(result)
    lines = output_lines(result)
    verdicts = [line for line in lines if line.startswith(("nothing-found ", "not-evaluated "))]
    assert len(verdicts) == 2, lines  # one line per failing image, each naming it escaped
    assert all(ESCAPED in line for line in verdicts)
    assert lines[-1].startswith("FAIL: 2 of 2 image(s) fail"), lines


def test_inspect_and_errors_print_names_escaped(injected_folder):
    result = runner.invoke(app, ["inspect", str(injected_folder / NAME)])
    assert_no_injected_line(result)
    assert f"a{ESCAPED}.jpg' (JPEG): no metadata" in result.output

    missing = injected_folder / f"c\n{FAKE}.jpg"
    result = runner.invoke(app, ["inspect", str(missing)])
    assert result.exit_code == 2
    assert_no_injected_line(result)
    assert f"c{ESCAPED}.jpg'" in result.output
