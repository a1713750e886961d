"""The README and docs/: every link resolves, and every command they show runs.

Links: a relative link names a file of the repository, and its ``#anchor`` a heading of
that file (GitHub's anchors: lower case, spaces to '-', punctuation dropped but '-' and
'_'). An http(s) link is checked for its form only: there is no network here.

Commands go in ```sh blocks; each block is a bash script (``set -e -o pipefail``), and the
output it shows is written as ``#`` comments. What a block gets is said by the line right
before its fence (blank lines between are allowed):

- nothing: the block runs as it is;
- ``<!-- run: with a receiver -->``: the block runs while a receiver is listening,
  started as ``make run`` starts it (gunicorn with ``gunicorn.conf.py``);
- ``<!-- not run: REASON -->``: the block is shown only, for the reason given (root,
  systemd, a server that never ends, the whole test suite...).

The blocks of one page run in order, as a reader would type them, in one scratch setting:
the repository as the working directory, a fresh SQLite database in ``PNM_DATABASE_URL``,
test values for ``PNM_API_KEY``, ``PNM_API_SECRET`` and ``PNM_ADMIN_TOKEN``, a scratch
``HOME`` (what a block writes to ``~/`` lands there), and the venv of
the interpreter running pytest first on ``PATH``. Two things are put in: ``.venv/bin/``
becomes that venv's ``bin/``, and ``127.0.0.1:8000`` (and ``PORT``) the receiver's port.
A block that does what only a marked block may (sudo, systemctl, make...) is refused
before anything runs; other shell fences (bash, console...) are refused too.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from tests.support.gunicorn_server import free_port, gunicorn
from tests.support.helpers import KEY, ROOT, SECRET

README = ROOT / "README.md"
DOCS = ROOT / "docs"
PAGES = (README, *sorted(DOCS.glob("*.md")))
README_MAX_LINES = 180

VENV_BIN = Path(sys.executable).parent  # not resolved: a venv's python is a symlink
ADMIN_TOKEN = "docs-admin-token-0123456789"
DEFAULT_PORT = "127.0.0.1:8000"

RECEIVER = "<!-- run: with a receiver -->"
NOT_RUN = re.compile(r"<!--\s*not run:\s*(\S.*?)\s*-->")
OTHER_SHELLS = {"bash", "shell", "console", "zsh", "shell-session", "shellsession", "sh-session"}
# What only a marked block may do: become root, touch the system, serve forever, build
# .venv/ in the checkout (make), run the whole suite, reach another machine.
MARK_NEEDED = re.compile(
    r"(?:^|[\s;&|(`$])(sudo|su|systemctl|journalctl|systemd-run|apt-get|apt|make|psql"
    r"|pg_dump|pg_restore|deploy/install\.sh|git\s+clone)(?=$|[\s;&|)])"
)

FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})(.*)$")
HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$")
HTML_ID = re.compile(r"<a\s[^>]*(?:id|name)=\"([^\"]+)\"")
MARKER_LINE = re.compile(r"^\s*<!--.*-->\s*$")
CODE_SPAN = re.compile(r"(`+)(?!`).+?(?<!`)\1(?!`)", re.S)
LINK = re.compile(
    r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]"  # the text, with at most one level of brackets
    r"\(\s*<?([^()\s<>]*)>?(?:\s+(?:\"[^\"]*\"|'[^']*'))?\s*\)"
)
REFERENCE = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", re.M)
AUTOLINK = re.compile(r"<([a-zA-Z][a-zA-Z0-9+.-]*:[^<>\s]*)>")
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


@dataclass(frozen=True)
class Block:
    """A fenced block: where it starts, its info string, its text, and the line before it."""

    page: Path
    line: int
    info: str
    text: str
    marker: str | None

    @property
    def where(self) -> str:
        return f"{shown_name(self.page)}:{self.line}"

    @property
    def language(self) -> str:
        return self.info.split()[0].lower() if self.info.split() else ""


@dataclass(frozen=True)
class Page:
    """A Markdown page: its prose (code blocks blanked out) and its fenced blocks."""

    path: Path
    prose: str
    blocks: tuple[Block, ...]


@cache
def parse(path: Path) -> Page:
    lines = path.read_text(encoding="utf-8").splitlines()
    prose: list[str] = []
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            prose.append(lines[i])
            i += 1
            continue
        fence, info = opening.group(1), opening.group(2).strip()
        closing = re.compile(rf"^ {{0,3}}{re.escape(fence[0])}{{{len(fence)},}}\s*$")
        end = next((j for j in range(i + 1, len(lines)) if closing.match(lines[j])), None)
        assert end is not None, f"{shown_name(path)}:{i + 1}: a code block is not closed"
        before = next((line.strip() for line in reversed(lines[:i]) if line.strip()), "")
        marker = before if MARKER_LINE.match(before) else None
        blocks.append(Block(path, i + 1, info, "\n".join(lines[i + 1 : end]) + "\n", marker))
        prose.extend([""] * (end + 1 - i))
        i = end + 1
    return Page(path, "\n".join(prose), tuple(blocks))


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link counts by its text
    text = re.sub(r"<[^>]+>", "", text).replace("`", "").replace("*", "")
    text = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return text.replace(" ", "-")


@cache
def anchors(path: Path) -> frozenset[str]:
    page = parse(path)
    seen: Counter[str] = Counter()
    found: set[str] = set(HTML_ID.findall(page.prose))
    for line in page.prose.splitlines():
        heading = HEADING.match(line)
        if heading:
            base = slug(heading.group(2))
            found.add(f"{base}-{seen[base]}" if seen[base] else base)
            seen[base] += 1
    return frozenset(found)


def links(path: Path) -> list[str]:
    prose = CODE_SPAN.sub("", parse(path).prose)
    prose = re.sub(r"<!--.*?-->", "", prose, flags=re.S)
    return [
        *LINK.findall(prose),
        *REFERENCE.findall(prose),
        *AUTOLINK.findall(prose),
    ]


def link_problem(path: Path, target: str) -> str | None:
    """Say what is wrong with a link from ``path``, or None."""
    if not target:
        return "an empty link"
    if SCHEME.match(target):
        parts = urlsplit(target)
        if parts.scheme not in ("http", "https"):
            return "not an http(s) link"
        host = parts.hostname or ""
        if "." not in host and host != "localhost":
            return "not a URL with a host"
        return None
    file_part, _, anchor = target.partition("#")
    destination = (path.parent / unquote(file_part)).resolve() if file_part else path
    if destination != ROOT and ROOT not in destination.parents:
        return "outside the repository"
    if not destination.exists():
        return f"{destination.relative_to(ROOT)} does not exist"
    if not anchor:
        return None
    if destination.suffix != ".md":
        return None if re.fullmatch(r"L\d+(-L\d+)?", anchor) else "an anchor into a non-page"
    if anchor not in anchors(destination):
        return f"{destination.relative_to(ROOT)} has no heading #{anchor}"
    return None


def shown_name(path: Path) -> str:
    return str(path.relative_to(ROOT)) if ROOT in path.parents else path.name


def _ids(paths: tuple[Path, ...]) -> list[str]:
    return [shown_name(p) for p in paths]


# --- links -------------------------------------------------------------------------


@pytest.mark.parametrize("path", PAGES, ids=_ids(PAGES))
def test_every_link_resolves(path):
    found = links(path)
    problems = [f"{target}: {why}" for target in found if (why := link_problem(path, target))]
    assert not problems, f"{shown_name(path)}:\n" + "\n".join(problems)


def test_links_are_found_and_judged():
    page = ROOT / "README.md"
    assert link_problem(page, "docs/security.md#bounds") is None
    assert link_problem(page, "docs/security.md#no-such-heading")
    assert link_problem(page, "docs/no-such-page.md")
    assert link_problem(page, "#the-two-commands") is None
    assert link_problem(page, "https://www.plugnmeet.org/") is None
    assert link_problem(page, "https://…")
    assert link_problem(page, "ftp://example.com/")
    assert link_problem(DOCS / "operations.md", "../BENCHMARKS.md") is None
    assert link_problem(DOCS / "operations.md", "../../outside.md")
    assert slug("Why `Chart.js`") == "why-chartjs"
    assert slug("The dashboard's sessions") == "the-dashboards-sessions"
    assert slug("A delivery's path") == "a-deliverys-path"


def test_the_readme_names_every_page_of_docs():
    named = {target.partition("#")[0] for target in links(README)}
    missing = [p.name for p in PAGES[1:] if f"docs/{p.name}" not in named]
    assert not missing, f"README.md does not link to: {', '.join(missing)}"


def test_the_readme_stays_short():
    lines = len(README.read_text(encoding="utf-8").splitlines())
    assert lines <= README_MAX_LINES, (
        f"README.md has {lines} lines; keep it to {README_MAX_LINES} and put the rest in docs/"
    )


def test_the_layout_table_names_every_module():
    """docs/architecture.md's layout table names each module and package of the code."""
    rows = [
        line
        for line in parse(DOCS / "architecture.md").prose.splitlines()
        if line.startswith("| `")
    ]
    package = ROOT / "plugnmeet_webhooks"
    missing = []
    for module in sorted(package.rglob("*.py")):
        relative = module.relative_to(package)
        if "migrations" in relative.parts or module.name == "__init__.py":
            continue
        if len(relative.parts) == 1:
            named = any(
                re.search(rf"[`/]{re.escape(module.name)}`", row.split("|")[1]) for row in rows
            )
        else:
            owner = f"`plugnmeet_webhooks/{relative.parts[0]}/`"
            row = next((r for r in rows if owner in r.split("|")[1]), "")
            named = f"`{module.stem}`" in row and all(
                f"`{part}/`" in row for part in relative.parts[1:-1]
            )
        if not named:
            missing.append(str(module.relative_to(ROOT)))
    assert not missing, "docs/architecture.md's layout does not name: " + ", ".join(missing)


# --- commands ----------------------------------------------------------------------


def plan(block: Block) -> str:
    """Say what a ```sh block gets: ``run``, ``receiver`` or ``shown``; refuse a bad mark."""
    if block.marker is None:
        return "run"
    if block.marker == RECEIVER:
        return "receiver"
    if NOT_RUN.fullmatch(block.marker):
        return "shown"
    raise AssertionError(
        f"{block.where}: {block.marker!r} is not a mark; use {RECEIVER} or <!-- not run: REASON -->"
    )


def commands(block: Block) -> list[str]:
    return [
        line
        for line in block.text.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]


def marking_problems(path: Path) -> list[str]:
    """Shell blocks not in ```sh, marks that are wrong or stray, commands that need a mark."""
    page = parse(path)
    problems = []
    marked_lines = set()
    for block in page.blocks:
        if block.language in OTHER_SHELLS:
            problems.append(f"{block.where}: commands go in ```sh blocks, not ```{block.language}")
            continue
        if block.language != "sh":
            if block.marker is not None and (
                block.marker == RECEIVER or NOT_RUN.fullmatch(block.marker)
            ):
                problems.append(f"{block.where}: a mark on a ```{block.language} block")
            continue
        marked_lines.add(block.marker)
        try:
            how = plan(block)
        except AssertionError as exc:
            problems.append(str(exc))
            continue
        if how != "shown":
            for line in commands(block):
                needs = MARK_NEEDED.search(line)
                if needs:
                    problems.append(
                        f"{block.where}: {needs.group(1)!r} cannot run in a test; mark the block "
                        "<!-- not run: REASON -->"
                    )
    for line in page.prose.splitlines():
        text = line.strip()
        if (text == RECEIVER or NOT_RUN.fullmatch(text)) and text not in marked_lines:
            problems.append(f"{shown_name(path)}: {text!r} stands before no ```sh block")
    return problems


@pytest.mark.parametrize("path", PAGES, ids=_ids(PAGES))
def test_every_command_block_is_run_or_marked(path):
    problems = marking_problems(path)
    assert not problems, "\n".join(problems)


def test_marks_are_judged(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "```sh\nsudo systemctl restart plugnmeet-webhooks\n```\n\n"
        "<!-- not run: needs root -->\n```sh\nsudo deploy/install.sh\n```\n\n"
        "<!-- not run -->\n```sh\necho hi\n```\n\n"
        "```bash\necho hi\n```\n\n"
        "<!-- run: with a receiver -->\n\nSome prose.\n"
    )
    problems = "\n".join(marking_problems(page))
    assert "page.md:1: 'sudo' cannot run in a test" in problems
    assert "page.md:6" not in problems
    assert "page.md:11: '<!-- not run -->' is not a mark" in problems
    assert "page.md:15: commands go in ```sh blocks, not ```bash" in problems
    assert "stands before no ```sh block" in problems


def _scratch_environment(tmp_path: Path, port: int) -> dict[str, str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("PNM_")}
    return environment | {
        "PNM_API_KEY": KEY,
        "PNM_API_SECRET": SECRET,
        "PNM_ADMIN_TOKEN": ADMIN_TOKEN,
        "PNM_DATABASE_URL": f"sqlite:///{tmp_path / 'docs.db'}",
        "PORT": str(port),
        "HOME": str(tmp_path),
        "PATH": f"{VENV_BIN}{os.pathsep}{environment.get('PATH', '')}",
    }


def script_of(block: Block, port: int) -> str:
    script = re.sub(r"(?<![\w./-])\.venv/bin/", f"{VENV_BIN}/", block.text)
    return script.replace(DEFAULT_PORT, f"127.0.0.1:{port}")


def _runs(path: Path, *marks: str | None) -> bool:
    return any(b.language == "sh" and b.marker in marks for b in parse(path).blocks)


RUNNABLE = [
    pytest.param(
        path,
        marks=[pytest.mark.slow] if _runs(path, RECEIVER) else [],
        id=str(path.relative_to(ROOT)),
    )
    for path in PAGES
    if _runs(path, None, RECEIVER)
]


@pytest.mark.parametrize("path", RUNNABLE)
def test_the_commands_shown_run(path, tmp_path):
    assert not marking_problems(path), "see test_every_command_block_is_run_or_marked"
    with ExitStack() as stack:
        port = free_port()
        environment = _scratch_environment(tmp_path, port)
        receiver = None
        for block in parse(path).blocks:
            if block.language != "sh" or plan(block) == "shown":
                continue
            if plan(block) == "receiver" and receiver is None:
                receiver = stack.enter_context(
                    gunicorn(
                        tmp_path,
                        workers=1,
                        PNM_API_KEYS="",
                        PNM_DATABASE_URL=environment["PNM_DATABASE_URL"],
                        PNM_ADMIN_TOKEN=ADMIN_TOKEN,
                    )
                )
                port = urlsplit(receiver.url).port or port
                environment["PORT"] = str(port)
            result = subprocess.run(
                ["bash", "-e", "-o", "pipefail", "-c", script_of(block, port)],
                cwd=ROOT,
                env=environment,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert result.returncode == 0, (
                f"{block.where} exited {result.returncode}:\n{block.text}\n"
                f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
                + (f"\n--- receiver\n{receiver.log()}" if receiver else "")
            )
