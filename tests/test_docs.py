"""The docs say what the code does: one settings table, made from `beluga.settings`; every `BELUGA_*`
name they mention exists; every shell block parses, and every `beluga ...` line in one is a command line
the real `beluga` parser accepts.

When a setting is added to `beluga.settings._ENV`, `test_every_setting_has_a_row` names the row to add to
docs/configuration.md."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import re
import shlex
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest

from beluga import settings as settings_module
from beluga.cli.parser import build

ROOT = Path(__file__).resolve().parent.parent
CONFIGURATION = ROOT / "docs" / "configuration.md"
DOCS = sorted({ROOT / "README.md", ROOT / "CHANGELOG.md", *(ROOT / "docs").rglob("*.md"),
               *(ROOT / "examples").rglob("*.md")})
BLOCK = re.compile(r"^```(?P<lang>[A-Za-z]*)[^\n]*\n(?P<body>.*?)^```", re.M | re.S)
SHELL = {"bash", "sh", "shell", "console"}
ROW = re.compile(r"^\|\s*`(BELUGA_[A-Z0-9_]+)`\s*\|(?P<meaning>.*)\|(?P<default>[^|]*)\|\s*$")
NAME = re.compile(r"\bBELUGA_[A-Z0-9_]*[A-Z0-9]\b")


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def _settings_rows() -> dict[str, tuple[str, str]]:
    """The table of docs/configuration.md's section "Settings": variable -> (meaning, default cell)."""
    text = CONFIGURATION.read_text()
    section = text.split("\n## Settings\n", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        m = ROW.match(line)
        if m:
            rows[m.group(1)] = (m.group("meaning").strip(), m.group("default").strip())
    return rows


def _defaults() -> dict[str, object]:
    return {f.name: f.default for f in dataclasses.fields(settings_module.Settings)}


def test_docs_exist() -> None:
    for name in ("README.md", "CHANGELOG.md", "docs/configuration.md", "docs/quickstart.md", "docs/install.md",
                 "docs/django.md", "docs/web-apps.md", "docs/production.md", "docs/troubleshooting.md",
                 "docs/architecture.md", "docs/performance.md", "docs/reliability.md", "docs/upgrading.md"):
        assert (ROOT / name).is_file(), f"{name} is missing"


# --- one settings table -------------------------------------------------------------------------------

def test_every_setting_has_a_row() -> None:
    rows = _settings_rows()
    defaults = _defaults()
    missing = [(key, var) for key, var in settings_module._ENV.items() if var not in rows]
    assert not missing, "docs/configuration.md's settings table has no row for " + "; ".join(
        f"{var} (beluga.settings._ENV[{key!r}], Settings.{key} = {defaults.get(key)!r}): add "
        f"`| `{var}` | what it does, who reads it | {defaults.get(key)!r} |`" for key, var in missing)


def test_the_table_has_only_settings() -> None:
    known = set(settings_module._ENV.values())
    extra = sorted(set(_settings_rows()) - known)
    assert not extra, (f"docs/configuration.md's settings table has rows for {extra}, which are not in "
                       "beluga.settings._ENV: remove them, or add the setting to beluga/settings.py")


def _literal(cell: str) -> str | None:
    m = re.fullmatch(r"`([^`]*)`", cell)
    return m.group(1) if m else None


def test_literal_defaults_match_settings() -> None:
    """A default written as one literal (`15`) is Settings' default; prose (`none`, `the broker URL ...`)
    is for what has no single value."""
    defaults = _defaults()
    by_var = {var: key for key, var in settings_module._ENV.items()}
    wrong = []
    for var, (_, cell) in _settings_rows().items():
        literal = _literal(cell)
        if literal is None or var not in by_var:
            continue
        default = defaults[by_var[var]]
        if isinstance(default, bool):
            ok = literal.lower() == str(default).lower()
        elif not isinstance(default, (int, float)):
            ok = literal == (",".join(default) if isinstance(default, tuple) else str(default))
        else:
            try:
                ok = float(literal) == float(default)
            except ValueError:
                ok = False
        if not ok:
            wrong.append(f"{var}: the table says `{literal}`, Settings.{by_var[var]} is {default!r}")
    assert not wrong, "docs/configuration.md: " + "; ".join(wrong)


def test_no_other_settings_table() -> None:
    """README, api.md and the guides link to docs/configuration.md instead of carrying their own table."""
    for path in DOCS:
        if path == CONFIGURATION:
            continue
        rows = [line for line in path.read_text().splitlines() if ROW.match(line)]
        assert not rows, f"{_rel(path)} has settings rows ({rows[0][:60]}...): link to docs/configuration.md"


def _names_in_code() -> set[str]:
    names = set(settings_module._ENV.values())
    for folder in ("beluga", "examples", "scripts", "tests"):
        for path in (ROOT / folder).rglob("*"):
            if path.suffix in (".py", ".sh", ".lua") and path.name != "test_docs.py":
                names |= set(NAME.findall(path.read_text(errors="replace")))
    return names


def test_every_beluga_name_in_the_docs_exists() -> None:
    known = _names_in_code()
    unknown = []
    for path in [*DOCS, *(ROOT / "docs" / "deploy").rglob("*")]:
        if path.is_file():
            for lineno, line in enumerate(path.read_text().splitlines(), 1):
                unknown += [f"{_rel(path)}:{lineno}: {name}" for name in NAME.findall(line) if name not in known]
    assert not unknown, "names that no code reads: " + "; ".join(unknown)


# --- shell blocks ---------------------------------------------------------------------------------------

def _shell_blocks() -> list[tuple[str, str, str]]:
    """(where, language, text) of every shell block of the docs; a console block gives its `$ ` lines."""
    blocks = []
    for path in DOCS:
        text = path.read_text()
        for m in BLOCK.finditer(text):
            lang = m.group("lang").lower()
            if lang not in SHELL:
                continue
            where = f"{_rel(path)}:{text.count(chr(10), 0, m.start()) + 1}"
            body = m.group("body")
            if lang == "console":
                commands, more = [], False
                for line in body.splitlines():
                    if line.startswith("$ ") or more:
                        commands.append(line[2:] if line.startswith("$ ") and not more else line)
                        more = line.endswith("\\")
                body = "\n".join(commands) + "\n"
            blocks.append((where, lang, body))
    return blocks


BLOCKS = _shell_blocks()


def test_the_docs_have_shell_blocks() -> None:
    assert len(BLOCKS) >= 20, f"only {len(BLOCKS)} shell blocks found: is the block pattern broken?"


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
@pytest.mark.parametrize("where,lang,body", BLOCKS, ids=[b[0] for b in BLOCKS])
def test_shell_block_parses(where: str, lang: str, body: str) -> None:
    out = subprocess.run(["bash", "-n"], input=body, capture_output=True, text=True)
    assert out.returncode == 0, f"{where}: the {lang} block does not parse: {out.stderr.strip()}"


SEPARATORS = {"|", "||", "&&", ";", "&", "(", ")", ";;", "|&"}
REDIRECTS = {">", ">>", "<", "2>", "2>&1", ">&", "<<"}
PREFIXES = {"exec", "sudo", "time", "env", "then", "do", "else", "!"}
ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
CELERY_VALUED = {"-A", "--app", "-b", "--broker", "--result-backend", "--loader", "--config", "--workdir"}


def _commands(body: str) -> list[list[str]]:
    """The simple commands of a shell text, as argument lists (variables and globs left as written)."""
    text = body.replace("\\\n", " ")
    lexer = shlex.shlex(text, posix=True, punctuation_chars=";&|()<>")
    lexer.whitespace_split = True
    lexer.commenters = "#"
    commands: list[list[str]] = [[]]
    skip = False
    for token in lexer:
        if token in SEPARATORS:
            commands.append([])
        elif token in REDIRECTS or (token and set(token) <= set("<>&")):
            skip = True
        elif skip:
            skip = False
        else:
            commands[-1].append(token)
    return [c for c in commands if c]


def _beluga_argv(words: list[str]) -> list[str] | None:
    """The arguments given to the `beluga` command, or None when the command is another program."""
    i = 0
    while i < len(words) and (ASSIGNMENT.match(words[i]) or words[i] in PREFIXES):
        i += 1
    words = words[i:]
    if not words:
        return None
    program = words[0]
    if program == "beluga" or program.endswith("/beluga"):
        return words[1:]
    if re.search(r"(^|/)python[0-9.]*$", program) and words[1:3] == ["-m", "beluga"]:
        return words[3:]
    if re.search(r"(^|/)celery$", program):
        # celery [global options] SUBCOMMAND ...: the sub-command is the first word that is no option's value
        rest, j = words[1:], 0
        while j < len(rest) and rest[j].startswith("-"):
            j += 1 if "=" in rest[j] or rest[j] not in CELERY_VALUED else 2
        if j < len(rest) and rest[j] == "beluga":
            return rest[j + 1:]
    return None


def _beluga_lines() -> list[tuple[str, list[str]]]:
    found = []
    for where, _, body in BLOCKS:
        for line in body.replace("\\\n", " ").splitlines():
            for words in _commands(line):
                argv = _beluga_argv(words)
                if argv is not None:
                    found.append((where, argv))
    return found


BELUGA_LINES = _beluga_lines()


def test_the_docs_show_beluga_commands() -> None:
    commands = {argv[next((i for i, a in enumerate(argv) if not a.startswith("-") and
                          (i == 0 or argv[i - 1] not in ("--store", "--executor", "--imports"))), 0)]
                for _, argv in BELUGA_LINES if argv}
    assert {"list", "show", "start", "signal", "query", "cancel", "terminate", "retry", "export", "replay",
            "console", "temporal-worker"} <= commands, f"the docs show only {sorted(commands)}"


@pytest.mark.parametrize("where,argv", BELUGA_LINES, ids=[f"{w} beluga {' '.join(a)[:50]}" for w, a in BELUGA_LINES])
def test_beluga_command_line_parses(where: str, argv: list[str]) -> None:
    parser = build()
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        try:
            parser.parse_args(argv)
        except SystemExit as exc:
            assert exc.code == 0, f"{where}: `beluga {shlex.join(argv)}` is refused: {err.getvalue().strip()}"


def test_the_command_line_check_can_fail() -> None:
    """The checks above refuse what the parser refuses, and find beluga in every form the docs use."""
    assert _beluga_argv(["BELUGA_IMPORTS=x", ".venv/bin/beluga", "list"]) == ["list"]
    assert _beluga_argv(["python", "-m", "beluga", "show", "x"]) == ["show", "x"]
    assert _beluga_argv(["celery", "-A", "beluga", "beluga", "list"]) == ["list"]
    assert _beluga_argv(["celery", "-A", "beluga", "worker"]) is None
    assert _beluga_argv(["celery", "-A", "beluga", "worker", "-Q", "beluga", "-c", "2"]) is None
    assert _beluga_argv(["celery", "--app=proj", "beluga", "show", "x"]) == ["show", "x"]
    assert _beluga_argv(["python", "-m", "beluga.dev"]) is None
    with pytest.raises(AssertionError, match="refused"):
        test_beluga_command_line_parses("here", ["lsit"])
    with pytest.raises(AssertionError, match="does not parse"):
        test_shell_block_parses("here", "bash", "beluga show <ID>\n")


# --- links and code -------------------------------------------------------------------------------------

LINK = re.compile(r"\]\((?!https?://|mailto:)([^)\s]+)\)")


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    text = BLOCK.sub("", path.read_text())
    return {_slug(m.group(1)) for m in re.finditer(r"^#{1,6}\s+(.+)$", text, re.M)}


def test_links_between_the_docs_resolve() -> None:
    broken = []
    for path in DOCS:
        text = BLOCK.sub("", path.read_text())
        for target in LINK.findall(text):
            file, _, anchor = target.partition("#")
            dest = (path.parent / file).resolve() if file else path
            if not dest.exists():
                broken.append(f"{_rel(path)}: {target} (no such file)")
            elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
                broken.append(f"{_rel(path)}: {target} (no heading #{anchor} in {_rel(dest)})")
    assert not broken, "broken links: " + "; ".join(broken)


def test_python_blocks_parse() -> None:
    import ast

    bad = []
    for path in DOCS:
        text = path.read_text()
        for m in BLOCK.finditer(text):
            if m.group("lang") == "python":
                try:
                    ast.parse(textwrap.dedent(m.group("body")))
                except SyntaxError as exc:
                    bad.append(f"{_rel(path)}:{text.count(chr(10), 0, m.start()) + 1 + (exc.lineno or 0)}: {exc.msg}")
    assert not bad, "python blocks that do not parse: " + "; ".join(bad)
