"""The documentation holds together: every relative link and anchor in README.md, CONTRIBUTING.md and
docs/*.md leads to a file of the repository and, where it names one, to a heading of that file; every
``make <target>`` they show exists in the Makefile; and the README opens with its two commands.

Markdown is parsed with markdown-it-py (CommonMark, as GitHub renders it), so links inside code are
not links, and headings get GitHub's anchors (lowercase, punctuation dropped, spaces to hyphens,
``-1``, ``-2`` for repeats).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from markdown_it import MarkdownIt
from markdown_it.token import Token

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").glob("*.md"))]

_MD = MarkdownIt("commonmark").enable("table")
# `make [VAR=value ...] target`, as the pages show it in code
_MAKE = re.compile(r"(?<![\w/.-])make((?:\s+[A-Z_][A-Z0-9_]*=\S+)*)\s+([a-z][a-z0-9_-]*)")
_RULE = re.compile(r"^([A-Za-z0-9_.-]+(?:[ \t]+[A-Za-z0-9_.-]+)*)[ \t]*:(?!=)", re.MULTILINE)


@dataclass
class Page:
    """What one Markdown file offers (its anchors) and asks for (its links, its make targets)."""

    path: Path
    anchors: set[str] = field(default_factory=set)
    links: list[tuple[int, str]] = field(default_factory=list)  # (line, target)
    make_targets: list[tuple[int, str]] = field(default_factory=list)


def github_slug(text: str) -> str:
    """The anchor GitHub gives a heading whose rendered text is ``text``."""
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def _plain(inline: Token) -> str:
    return "".join(child.content for child in inline.children or [] if child.type in ("text", "code_inline"))


def _line(token: Token) -> int:
    return token.map[0] + 1 if token.map else 0


def read_page(path: Path) -> Page:
    page = Page(path)
    tokens = _MD.parse(path.read_text(encoding="utf-8"))
    seen: dict[str, int] = {}
    for i, token in enumerate(tokens):
        if token.type == "heading_open":
            slug = github_slug(_plain(tokens[i + 1]))
            page.anchors.add(slug if slug not in seen else f"{slug}-{seen[slug]}")
            seen[slug] = seen.get(slug, 0) + 1
        elif token.type in ("fence", "code_block"):
            first = _line(token) + (token.type == "fence")  # a fence's content starts below its ``` line
            page.make_targets += [
                (first + token.content.count("\n", 0, m.start()), m.group(2)) for m in _MAKE.finditer(token.content)
            ]
        elif token.type == "inline":
            line = _line(token)
            for child in token.children or []:
                if child.type in ("softbreak", "hardbreak"):
                    line += 1
                elif child.type == "link_open":
                    page.links.append((line, str(child.attrs["href"])))
                elif child.type == "image":
                    page.links.append((line, str(child.attrs["src"])))
                elif child.type == "code_inline":
                    page.make_targets += [(line, m.group(2)) for m in _MAKE.finditer(child.content)]
    return page


def broken_links(paths: list[Path], root: Path) -> list[str]:
    """Every relative link of ``paths`` that leads nowhere: a missing file, a path outside ``root``,
    or an anchor that no heading of the target page has."""
    pages = {p.resolve(): read_page(p) for p in paths}
    problems = []
    for page in pages.values():
        for line, target in page.links:
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto:, ...: not ours to check
                continue
            where = f"{page.path.relative_to(root)}:{line}: {target}"
            path_part, _, anchor = target.partition("#")
            dest = (page.path.parent / path_part).resolve() if path_part else page.path.resolve()
            if not dest.is_relative_to(root.resolve()):
                problems.append(f"{where}: outside the repository")
            elif not dest.exists():
                problems.append(f"{where}: no such file")
            elif anchor:
                if dest.suffix != ".md":
                    problems.append(f"{where}: an anchor into a file that is not Markdown")
                    continue
                target_page = pages.get(dest) or read_page(dest)
                if anchor not in target_page.anchors:
                    problems.append(f"{where}: no heading with this anchor")
    return problems


def makefile_targets(makefile: Path) -> set[str]:
    names: set[str] = set()
    for m in _RULE.finditer(makefile.read_text(encoding="utf-8")):
        names.update(m.group(1).split())
    return names


def unknown_make_targets(paths: list[Path], makefile: Path) -> list[str]:
    known = makefile_targets(makefile)
    return [
        f"{path.name}:{line}: make {target}"
        for path in paths
        for line, target in read_page(path).make_targets
        if target not in known
    ]


def test_every_relative_link_and_anchor_resolves() -> None:
    assert broken_links(PAGES, ROOT) == []


def test_every_make_target_the_pages_show_exists() -> None:
    shown = {target for path in PAGES for _, target in read_page(path).make_targets}
    assert {"demo", "test", "lint", "bench", "up", "worker", "compose-check"} <= shown
    assert unknown_make_targets(PAGES, ROOT / "Makefile") == []


def test_every_docs_page_is_linked_from_the_readme() -> None:
    readme = read_page(ROOT / "README.md")
    linked = {(ROOT / target.partition("#")[0]).resolve() for _, target in readme.links}
    assert {p.resolve() for p in PAGES if p.parent.name == "docs"} <= linked
    assert (ROOT / "CONTRIBUTING.md").resolve() in linked


def test_the_readme_opens_with_the_two_commands() -> None:
    first = [line.split("#")[0].strip() for line in (ROOT / "README.md").read_text().splitlines()[:2]]
    assert first == ["make demo", "make test"]


def test_the_link_check_finds_what_is_broken(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "b.md").write_text("# B page\n\n## The `esproto` server (test code)\n\n## Again\n\n## Again\n")
    (tmp_path / "a.md").write_text(
        "# A\n\n## Here, and there\n\n"
        "[ok](docs/b.md#the-esproto-server-test-code) [ok](#here-and-there) [ok](docs/b.md#again-1)\n"
        "[ok](https://example.com/x.md#nope) `[not a link](missing.md)`\n\n"
        "[gone](docs/missing.md) [bad anchor](docs/b.md#again-2) [bad local](#nowhere)\n"
        "[escapes](../outside.md) ![img](docs/missing.png)\n"
    )
    problems = broken_links([tmp_path / "a.md", tmp_path / "docs" / "b.md"], tmp_path)
    assert [p.rsplit(": ", 1)[0] for p in problems] == [
        "a.md:8: docs/missing.md",
        "a.md:8: docs/b.md#again-2",
        "a.md:8: #nowhere",
        "a.md:9: ../outside.md",
        "a.md:9: docs/missing.png",
    ]


def test_the_make_check_finds_an_unknown_target(tmp_path: Path) -> None:
    makefile = tmp_path / "Makefile"
    makefile.write_text(".PHONY: demo test\nVAR := x\ndemo: $(VAR)\n\techo make nothing\ntest lint: demo\n")
    page = tmp_path / "p.md"
    page.write_text(
        "Run `make demo`, then `make PYTHON=python3 lint`; make prose is ignored.\n\n"
        "```console\n$ REDIS_URL=redis://x make worker\n$ make test\n```\n\n`make deploy`\n"
    )
    assert makefile_targets(makefile) >= {"demo", "test", "lint"}
    assert unknown_make_targets([page], makefile) == ["p.md:4: make worker", "p.md:8: make deploy"]
