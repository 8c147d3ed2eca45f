"""The README's layout tree names every part of the repository, and the READMEs' relative
links lead somewhere.

The tree (the code block under ``## Layout`` in README.md) must list every top-level folder
the repository tracks, every package folder under ``toolkit/`` and every recipe folder, and
every folder it lists must exist, so it cannot go stale when a package is added, moved or
removed. Links: every ``[text](target)`` that is not a URL, in README.md, the recipe and conf
READMEs, the recipes' notes and docs/, names an existing file, and a ``#fragment`` names a
heading of that file (GitHub's anchors).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"


def layout_tree() -> list[str]:
    """The lines of the first code block after ``## Layout``."""
    text = README.read_text(encoding="utf-8")
    section = text.partition("\n## Layout\n")[2]
    assert section, "README.md has no '## Layout' section"
    block = re.search(r"^```[^\n]*\n(.*?)^```", section, re.S | re.M)
    assert block, "the '## Layout' section has no code block"
    return block.group(1).splitlines()


def tree_folders() -> set[str]:
    """Folder paths the tree names (``name/`` at the start of an entry, indented two spaces
    per level under its parent)."""
    folders: set[str] = set()
    parents: list[str] = []
    for line in layout_tree():
        entry = line.lstrip(" ")
        depth = (len(line) - len(entry)) // 2
        name = entry.split()[0] if entry.split() else ""
        if name.endswith("/"):
            del parents[depth:]
            path = "/".join([*parents, name.rstrip("/")])
            folders.add(path)
            parents.append(name.rstrip("/"))
    return folders


def packages(root: str) -> set[str]:
    """Sub-folders of ``root`` that are Python packages."""
    return {
        f"{root}/{p.parent.name}"
        for p in (REPO / root).glob("*/__init__.py")
        if not p.parent.name.startswith((".", "_"))
    }


def test_tree_names_every_toolkit_package_and_recipe():
    named = tree_folders()
    assert {"toolkit", "recipes"} <= named
    missing = sorted((packages("toolkit") | packages("recipes")) - named)
    assert not missing, f"README.md '## Layout' does not list: {missing}"


def test_every_folder_in_the_tree_exists():
    stale = sorted(f for f in tree_folders() if not (REPO / f).is_dir())
    assert not stale, f"README.md '## Layout' lists folders that do not exist: {stale}"


def test_tree_names_every_tracked_top_level_folder():
    if not (REPO / ".git").exists() or not shutil.which("git"):
        pytest.skip("not a git checkout")
    files = subprocess.run(
        ["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    tops = {f.split("/")[0] for f in files if "/" in f and not f.startswith(".")}
    missing = sorted(tops - tree_folders())
    assert not missing, f"README.md '## Layout' does not list the top-level folders {missing}"


# ----------------------------------------------------------------------------- links

LINK = re.compile(r"(?<!!)\[[^\]\n]*\]\(([^)\s]+)\)|!\[[^\]\n]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^\s*(```|~~~)")


def documents() -> list[Path]:
    docs = [README, *REPO.glob("recipes/*/README.md"), *REPO.glob("recipes/*/NOTES.md")]
    docs += [*REPO.glob("conf/**/README.md"), *REPO.glob("docs/**/*.md")]
    return sorted(p for p in docs if p.is_file())


def prose(text: str) -> str:
    """The text outside fenced code blocks (links inside them are code, not links)."""
    keep, inside = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            inside = not inside
            continue
        keep.append("" if inside else line)
    return "\n".join(keep)


def anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped (``_`` and ``-`` kept),
    spaces to hyphens."""
    text = heading.replace("`", "").replace("*", "").strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    found: set[str] = set()
    for line in prose(path.read_text(encoding="utf-8")).splitlines():
        m = re.match(r"#{1,6}\s+(.*)", line)
        if m:
            base = anchor(m.group(1))
            name, n = base, 1
            while name in found:  # repeated headings get -1, -2, ...
                name, n = f"{base}-{n}", n + 1
            found.add(name)
    return found


def test_the_anchor_rule():
    assert anchor("Choosing the decoding defaults") == "choosing-the-decoding-defaults"
    assert anchor("`recipe=<name>`: one file per recipe") == "recipename-one-file-per-recipe"
    assert anchor("A real photo (EfficientNet-Lite0 encoder)") == (
        "a-real-photo-efficientnet-lite0-encoder"
    )


@pytest.mark.parametrize("doc", documents(), ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_lead_somewhere(doc: Path):
    broken = []
    for match in LINK.finditer(prose(doc.read_text(encoding="utf-8"))):
        target = match.group(1) or match.group(2)
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:, ...
            continue
        path, _, fragment = target.partition("#")
        file = (doc.parent / path).resolve() if path else doc
        if not file.exists():
            broken.append(f"{target}: no such file")
        elif fragment and file.suffix == ".md" and fragment not in anchors(file):
            broken.append(f"{target}: no heading #{fragment} in {file.name}")
    assert not broken, f"{doc.relative_to(REPO)}: " + "; ".join(broken)
