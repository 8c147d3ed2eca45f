"""Every ``python -m toolkit.train|evaluate|predict|export|compare|report`` command shown in the
READMEs composes.

The commands are read from ``README.md``, ``recipes/*/README.md`` and ``conf/**/README.md``
(fenced code blocks, continuation lines joined, and inline code spans), their overrides are
extracted and each is composed with Hydra's compose API against the command's entry config
(compose only: nothing is trained). A failure names the README file and line.

Placeholders are filled in, not skipped: ``<...>`` in a value becomes a valid choice for a
config group (``attention=<name>`` -> ``additive``) and a plain word elsewhere
(``hydra.run.dir=runs/x/bigru-<name>``); ``ckpt=...`` values are only strings to
``evaluate.yaml``. A multirun (``-m``) is composed once per combination of its sweeps.
The only commands not composed are those in ``SKIPPED`` (reason given; the list must stay
small and every entry must still match a documented command). The two commands that read
their ``key=value`` words themselves, ``toolkit.interpret`` and ``toolkit.data``, have their
documented words parsed by the command's own parser (nothing is run).
"""

from __future__ import annotations

import importlib.util
import itertools
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser

from toolkit.paths import CONF_DIR

REPO = Path(__file__).resolve().parents[2]
COMMANDS = ("train", "evaluate", "predict", "export", "compare", "report")  # -> conf/<command>.yaml
# A placeholder's value for a config group, so the command composes as the user would run it.
PLACEHOLDER_CHOICE = {"recipe": "sentiment", "attention": "additive", "model": "bigru",
                      "profile": "quick", "trainer": "cpu"}  # fmt: skip
PLACEHOLDER_WORD = "example"

# substring of a command -> (why it is not composed, a module whose presence lifts the skip)
SKIPPED: dict[str, tuple[str, str | None]] = {
    "launcher=slurm": (
        "needs the optional hydra-submitit-launcher plugin (pip install .[slurm])",
        "hydra_plugins.hydra_submitit_launcher",
    ),
}
MAX_SKIPPED = 2

_MODULE = re.compile(r"-m\s+toolkit\.(?:" + "|".join(COMMANDS) + r")\b")
_FENCE = re.compile(r"^\s*(```|~~~)")
_INLINE = re.compile(r"`([^`\n]+)`")
_PLACEHOLDER = re.compile(r"<[^<>]*>")
_SHELL_END = {"|", "||", "&&", ";", ">", ">>", "2>", "&", "<"}


@dataclass(frozen=True)
class Command:
    file: str
    line: int
    text: str  # as written (continuations joined)
    command: str  # train | evaluate | compare
    overrides: tuple[str, ...]
    multirun: bool

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


def readme_files() -> list[Path]:
    files = [REPO / "README.md", *sorted(REPO.glob("recipes/*/README.md"))]
    files += sorted(REPO.glob("conf/**/README.md"))
    return [f for f in files if f.is_file()]


def _snippets(text: str, module: re.Pattern[str] = _MODULE) -> list[tuple[int, str]]:
    """(line number, command text): code-block lines (``\\`` continuations joined) and
    inline code spans outside code blocks."""
    out: list[tuple[int, str]] = []
    lines = text.splitlines()
    in_block = False
    i = 0
    while i < len(lines):
        line = lines[i]
        if _FENCE.match(line):
            in_block = not in_block
            i += 1
            continue
        if in_block:
            start, joined = i + 1, line
            while joined.rstrip().endswith("\\") and i + 1 < len(lines):
                i += 1
                joined = joined.rstrip()[:-1] + " " + lines[i].strip()
            out.append((start, joined))
        else:
            out += [(i + 1, m.group(1)) for m in _INLINE.finditer(line)]
        i += 1
    return [(n, s) for n, s in out if module.search(s)]


def _fill_placeholders(token: str) -> str:
    if "=" not in token or not _PLACEHOLDER.search(token):
        return token
    key, value = token.split("=", 1)
    group = key.lstrip("+~").split("@", 1)[0]
    if _PLACEHOLDER.fullmatch(value) and group in PLACEHOLDER_CHOICE:
        return f"{key}={PLACEHOLDER_CHOICE[group]}"
    return f"{key}={_PLACEHOLDER.sub(PLACEHOLDER_WORD, value)}"


def parse(file: str, line: int, text: str) -> Command | None:
    # a placeholder may hold spaces (`<run folder>`): one word before splitting
    text = text.rstrip().removesuffix("\\")
    words = shlex.split(_PLACEHOLDER.sub(lambda m: re.sub(r"\s+", "_", m.group(0)), text),
                        comments=True)  # fmt: skip
    for k in range(len(words) - 1):
        if words[k] == "-m" and words[k + 1] in {f"toolkit.{c}" for c in COMMANDS}:
            break
    else:
        return None  # e.g. `python -m toolkit.train|evaluate|compare` in prose
    overrides, multirun = [], False
    for word in words[k + 2 :]:
        if word in _SHELL_END:
            break
        if word in ("-m", "--multirun"):
            multirun = True
        elif not word.startswith("-"):
            overrides.append(_fill_placeholders(word))
    return Command(file, line, text.strip(), words[k + 1].split(".", 1)[1], tuple(overrides),
                   multirun)  # fmt: skip


def documented_commands() -> list[Command]:
    found = []
    for path in readme_files():
        rel = path.relative_to(REPO).as_posix()
        for line, text in _snippets(path.read_text(encoding="utf-8")):
            command = parse(rel, line, text)
            if command is not None:
                found.append(command)
    return found


def expand(command: Command) -> list[list[str]]:
    """The override lists to compose: one, or one per combination of a multirun's sweeps."""
    if not command.multirun:
        return [list(command.overrides)]
    choices = []
    for parsed in OverridesParser.create().parse_overrides(list(command.overrides)):
        key = parsed.get_key_element()
        if parsed.is_sweep_override():
            choices.append([f"{key}={v}" for v in parsed.sweep_string_iterator()])
        else:
            choices.append([parsed.input_line])
    return [list(combo) for combo in itertools.product(*choices)]


def _missing(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is None
    except ModuleNotFoundError:  # its parent package is not installed
        return True


def skip_reason(command: Command) -> str | None:
    for needle, (reason, unless_installed) in SKIPPED.items():
        if needle in command.text and (unless_installed is None or _missing(unless_installed)):
            return reason
    return None


ALL = documented_commands()


@pytest.fixture(scope="module")
def compose_cfg():
    GlobalHydra.instance().clear()
    done: dict[tuple[str, tuple[str, ...]], object] = {}  # commands repeated across READMEs

    def _compose(name: str, overrides: list[str]):
        key = (name, tuple(overrides))
        if key not in done:
            done[key] = compose(config_name=name, overrides=overrides, return_hydra_config=True)
        return done[key]

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        yield _compose
    GlobalHydra.instance().clear()


def test_commands_are_found_in_every_readme():
    per_file = {c.file for c in ALL}
    assert "README.md" in per_file
    for recipe_readme in REPO.glob("recipes/*/README.md"):
        assert recipe_readme.relative_to(REPO).as_posix() in per_file, recipe_readme
    assert {c.command for c in ALL} == set(COMMANDS)
    assert len(ALL) >= 40, [c.where for c in ALL]


def test_the_skip_list_is_small_and_used():
    assert len(SKIPPED) <= MAX_SKIPPED
    for needle in SKIPPED:
        assert any(needle in c.text for c in ALL), f"SKIPPED entry {needle!r} matches no command"
    assert sum(skip_reason(c) is not None for c in ALL) <= MAX_SKIPPED


def test_placeholders_and_sweeps_are_filled_in():
    cmd = parse("x.md", 1, "python -m toolkit.train -m recipe=<name> attention=a,b \\")
    assert (
        cmd is not None and cmd.multirun and cmd.overrides == ("recipe=sentiment", "attention=a,b")
    )
    assert expand(cmd) == [["recipe=sentiment", "attention=a"], ["recipe=sentiment", "attention=b"]]
    cmd = parse("x.md", 1, "python -m toolkit.train hydra.run.dir=runs/g/bigru-<name>  # note")
    assert cmd is not None and cmd.overrides == ("hydra.run.dir=runs/g/bigru-example",)
    assert parse("x.md", 1, "python -m toolkit.train|evaluate|compare") is None


@pytest.mark.parametrize("command", ALL, ids=[c.where for c in ALL])
def test_documented_command_composes(command: Command, compose_cfg):
    reason = skip_reason(command)
    if reason:
        pytest.skip(f"{command.where}: {reason}")
    for overrides in expand(command):
        try:
            cfg = compose_cfg(command.command, overrides)
        except Exception as err:  # noqa: BLE001 - any composition error fails the same way
            pytest.fail(
                f"{command.where}: `{command.text}` no longer composes "
                f"(overrides {overrides}): {type(err).__name__}: {err}",
                pytrace=False,
            )
        if command.command == "train":  # every train config names a model and a monitor
            assert cfg.model._target_ and cfg.recipe.monitor, command.where


# ----- the commands that read their key=value words themselves ----------------------------
_OWN_PARSER = re.compile(r"-m\s+toolkit\.(interpret|data)\b")


def own_parser_commands() -> list[tuple[str, str, list[str]]]:
    """``(where, command, words after the module)`` of every documented interpret/data line."""
    found = []
    for path in readme_files():
        rel = path.relative_to(REPO).as_posix()
        for line, text in _snippets(path.read_text(encoding="utf-8"), _OWN_PARSER):
            text = _PLACEHOLDER.sub(lambda m: re.sub(r"\s+", "_", m.group(0)), text)
            words = shlex.split(text.rstrip().removesuffix("\\"), comments=True)
            for k in range(len(words) - 1):
                if words[k] == "-m" and words[k + 1] in ("toolkit.interpret", "toolkit.data"):
                    rest = []
                    for word in words[k + 2 :]:
                        if word in _SHELL_END:
                            break
                        rest.append(word)
                    if rest:  # a bare `python -m toolkit.data` names the command, runs nothing
                        found.append((f"{rel}:{line}", words[k + 1], rest))
                    break
    return found


OWN = own_parser_commands()


def test_interpret_and_data_commands_are_found():
    assert {command for _, command, _ in OWN} == {"toolkit.interpret", "toolkit.data"}


@pytest.mark.parametrize(("where", "command", "words"), OWN, ids=[w for w, _, _ in OWN])
def test_documented_own_parser_command_parses(where, command, words):
    if command == "toolkit.interpret":
        from toolkit.commands.interpret import parse_args

        try:
            parse_args(words)
        except SystemExit as exit_:
            pytest.fail(f"{where}: {words} does not parse (exit {exit_.code})", pytrace=False)
        return
    from toolkit.commands.data import VALIDATE_KEYS, VERIFY_KEYS

    assert words and words[0] in ("validate", "verify"), where
    keys = VALIDATE_KEYS if words[0] == "validate" else VERIFY_KEYS
    unknown = [w for w in words[1:] if "=" in w and w.split("=", 1)[0] not in keys]
    assert not unknown, f"{where}: unknown keys {unknown}"
