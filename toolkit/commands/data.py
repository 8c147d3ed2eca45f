"""``python -m toolkit.data validate recipe=<name> path=<file> [path=<file> ...]``
``python -m toolkit.data verify corpus=<folder> [reference=<manifest.json>]`` (toolkit.data.verify)

Lists every problem of a dataset by file and line, with counts; exit code 1 when there are
problems, 2 on a usage error. Splits by name: ``train=… valid=… test=…`` (label sets are
compared between them); translation's aligned text files: ``source=src.txt
target=tgt.txt``; fields: ``text_field=… label_field=… source_field=… target_field=…``;
audio: ``channels=1`` (the default; ``channels=0`` accepts any count); COCO captions:
``image_dir=…``. ``recipe=`` is a ``conf/recipe/<name>.yaml`` name or the dotted name of a
recipe package; the recipe's ``validate.py`` hook does the checks (toolkit.recipe_hooks).
``python -m toolkit.data`` runs :func:`main`.
"""

from __future__ import annotations

import sys

from toolkit.commands.overrides import unknown_key_message
from toolkit.data.validate import validate_files
from toolkit.recipe_hooks import named_package

USAGE = (
    "usage: python -m toolkit.data validate recipe=<name> path=<file> [path=...]"
    " [train=... valid=... test=...] [source=... target=...]"
    " [text_field=... label_field=... source_field=... target_field=... channels=N image_dir=...]"
)
OPTIONS = ("text_field", "label_field", "source_field", "target_field", "channels", "image_dir")
# the keys of each sub-command
VALIDATE_KEYS = ("recipe", "path", "train", "valid", "test", "source", "target", *OPTIONS)
VERIFY_KEYS = ("corpus", "reference")


def verify(argv: list[str]) -> int:
    """``verify corpus=<corpus folder> [reference=<manifest.json>]`` (the folder may also be
    given as a bare word): exit 0 when all agree."""
    from toolkit.data.verify import verify_corpus

    usage = "usage: python -m toolkit.data verify corpus=<folder> [reference=manifest.json]"
    folders = [a for a in argv if "=" not in a]
    options = dict(a.split("=", 1) for a in argv if "=" in a)
    for key in set(options) - set(VERIFY_KEYS):
        print(f"{unknown_key_message(key, VERIFY_KEYS)}\n{usage}", file=sys.stderr)
        return 2
    if "corpus" in options:
        folders.append(options["corpus"])
    if len(folders) != 1:
        print(usage, file=sys.stderr)
        return 2
    problems = verify_corpus(folders[0], options.get("reference"))
    for line in problems:
        print(line)
    print(
        f"{folders[0]}: " + ("the same corpus" if not problems else f"{len(problems)} differences")
    )
    return 0 if not problems else 1


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "verify":
        return verify(argv[1:])
    if not argv or argv[0] != "validate":
        print(USAGE, file=sys.stderr)
        return 2
    recipe, files, options, parallel = None, {}, {}, {}
    for arg in argv[1:]:
        key, sep, value = arg.partition("=")
        if not sep:
            print(f"expected key=value, got {arg!r}\n{USAGE}", file=sys.stderr)
            return 2
        if key == "recipe":
            recipe = value
        elif key == "path":
            files[f"path{len(files)}"] = value
        elif key in ("train", "valid", "test"):
            files[key] = value
        elif key in ("source", "target"):
            parallel[key] = value
        elif key in OPTIONS:
            options[key] = int(value) if key == "channels" else value
        else:
            print(f"{unknown_key_message(key, VALIDATE_KEYS)}\n{USAGE}", file=sys.stderr)
            return 2
    try:
        package = named_package(recipe or "")
    except ValueError as err:
        print(err, file=sys.stderr)
        return 2
    if parallel:
        if set(parallel) != {"source", "target"}:
            print("give both source=... and target=...", file=sys.stderr)
            return 2
        files["parallel"] = [parallel["source"], parallel["target"]]
    if not files:
        print(f"no files given\n{USAGE}", file=sys.stderr)
        return 2
    report = validate_files(str(recipe), files, options, package)
    print(report.summary())
    return 0 if report.ok else 1
