"""README.md and docs/*.md: every command parses, every link and name resolves.

Commands come from the fenced bash/sh/shell/console blocks of the pages.
Lines ending in a backslash are joined; `&&`, `;`, `|` and `&` separate
commands. A command is checked where it runs one of ours:

- `python SCRIPT.py ...`: the script exists, and its arguments pass the
  script's own argparse parser (captured when the script starts parsing, so
  nothing is trained or loaded); `...` stands for "more flags" and is
  dropped, and a shell variable (`$rank`) is parsed as the value 0;
- `ltpa-NAME ...`: the same, through the entry point `pyproject.toml`
  declares for it;
- `python -m MODULE ...`: a `keras_ltpa` module as a script; any other module
  by its `--help` text (each flag must appear there, each path exist);
- `python -c CODE`: the code compiles; `bash SCRIPT.sh`: it exists and
  `bash -n` accepts it; `pip install ...`: the extras exist in pyproject.toml;
- `KERAS_BACKEND=...` in front names a Keras backend.

Commands that need more than a clone and a CPU say so in a comment on their
line or in the comment block above them (`needs network`, `needs docker`,
`needs a server`, `needs a GPU`, `long`). pip, docker and curl commands, and
those that read a tensorflow-datasets set, must carry their marker.

Every shell block holding one of our commands says, on the line before its
fence, how it is checked beyond parsing:

- `<!-- run: short -->`: its commands (those not marked `needs ...`) run as
  written, in order, in an empty folder, under TensorFlow;
- `<!-- run: tiny (why) -->`: the same, each fit command with
  `TINY_OVERRIDE` appended (one step on a few images; argparse keeps the
  last value of a flag);
- `<!-- run: parse (why) -->`: only parsed (network, GPUs, long, or a
  command that writes into the repository).

A run reads the committed fixtures where a page names data a clone lacks
(`SUBSTITUTIONS`: `../shared/data` -> tests/fixtures/data, the same layout;
`path/to/images` and the like -> folders of it), finds the reader's own
files it names (`photo.jpg`, `cat.png`, ...) made from fixture images, and
a `runs/NAME` an earlier network or long command would have trained as a
run directory holding a shipped preset (`_stand_in_run`). Each command exits
0 within `RUN_TIMEOUT` and writes what its `--output`, `--output-dir` or
`--report-dir` names.

Relative links (and their #anchors), `keras_ltpa.*` names and repository
paths written in code spans must exist; Python blocks must compile, and the
`keras_ltpa` names they import must exist.
"""

import argparse
import ast
import contextlib
import dataclasses
import functools
import importlib
import io
import os
import pathlib
import re
import runpy
import shlex
import subprocess
import sys
import tempfile

import pytest

from tests.conftest import SMALL_DATA_DIR

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
PAGES = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
# Pages written by the report scripts (docs/results) and the benchmarks' page:
# their links are checked too, their commands are the scripts' own.
LINKED_PAGES = PAGES + sorted((REPO_ROOT / "docs" / "results").rglob("*.md")) + [
    REPO_ROOT / "benchmarks" / "README.md"
]
SHELL_LANGUAGES = {"bash", "sh", "shell", "console"}
MARKER = re.compile(
    r"\b(needs (?:network|docker|a server|a gpu|gpus|a cluster)|long)\b", re.IGNORECASE
)
SEPARATORS = {"&&", "||", ";", "|", "&", ";;", "(", ")"}
ENV_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
SHELL_VARIABLE = re.compile(r"^\$(\w+|\{\w+\})$")
BACKENDS = {"tensorflow", "jax", "torch"}
README_TEST_COMMAND = 'pip install -e ".[test]" && python -m pytest -q -n auto'


# --- Reading the pages ---------------------------------------------------


RUN_MARKER = re.compile(r"^<!--\s*run:\s*(\w+)\s*(?:\((.*)\))?\s*-->$")
RUN_MODES = ("short", "tiny", "parse")


@dataclasses.dataclass
class Block:
    page: pathlib.Path
    line: int  # 1-based line of the first line inside the fence
    language: str
    lines: list
    run: tuple = None  # (mode, reason) of a `<!-- run: ... -->` line before the fence


def _rel(path):
    try:
        return path.relative_to(REPO_ROOT).as_posix()
    except ValueError:
        return path.name


def fenced_blocks(page):
    """The fenced code blocks of a Markdown page, and its text outside them."""
    blocks, prose, fence, current, previous = [], [], None, None, ""
    for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
        stripped = line.strip()
        if fence is None:
            match = re.match(r"^(`{3,}|~{3,})\s*([\w+-]*)", stripped)
            if match:
                fence = match.group(1)
                marker = RUN_MARKER.match(previous)
                run = (marker.group(1), (marker.group(2) or "").strip()) if marker else None
                current = Block(page, number + 1, match.group(2).lower(), [], run)
            else:
                prose.append(line)
                previous = stripped or previous
        elif stripped.startswith(fence) and stripped.strip(fence[0]) == "":
            blocks.append(current)
            fence, previous = None, ""
        else:
            current.lines.append(line)
    return blocks, "\n".join(prose)


@dataclasses.dataclass
class Command:
    """One command of a shell block: its words, and the comments that go with it."""

    page: pathlib.Path
    line: int
    text: str
    words: list
    comment: str
    block: Block = None

    @property
    def markers(self):
        return {m.lower() for m in MARKER.findall(self.comment)}

    def ident(self):
        found = _ours(self)
        program = f"{found[1]}" if found else (self.words or ["?"])[0]
        return f"{_rel(self.page)}:{self.line}:{program[:40]}"


def split_comment(text):
    """(command, comment): a `#` at the start of a word, outside quotes,
    begins a shell comment."""
    quote, previous = None, " "
    for index, char in enumerate(text):
        if quote:
            if char == quote and not (quote == '"' and previous == "\\"):
                quote = None
        elif char in "'\"":
            quote = char
        elif char == "#" and previous.isspace():
            return text[:index].rstrip(), text[index:]
        previous = char
    return text, ""


def split_words(text):
    lexer = shlex.shlex(text, posix=True, punctuation_chars=True)
    lexer.commenters = ""
    lexer.whitespace_split = True
    return list(lexer)


def shell_commands(block):
    """The commands of a shell block. A comment block applies to the commands
    that follow it, up to a blank line or the next comment block; a trailing
    comment to its own line."""
    joined, start, pending, after_command = [], None, "", False
    for offset, raw in enumerate(block.lines):
        start = offset if start is None else start
        if raw.rstrip().endswith("\\"):
            joined.append(raw.rstrip()[:-1])
            continue
        text, line = " ".join([*joined, raw]).strip(), block.line + start
        joined, start = [], None
        if not text:
            pending, after_command = "", False
            continue
        if text.startswith("#"):
            pending = text if after_command else f"{pending} {text}"
            after_command = False
            continue
        after_command = True
        command, comment = split_comment(text)
        segment = []
        for word in [*split_words(command), ";"]:
            if word in SEPARATORS:
                if segment:
                    yield Command(block.page, line, text, segment, f"{pending} {comment}", block)
                segment = []
            else:
                segment.append(word)


def all_blocks():
    for page in PAGES:
        yield from fenced_blocks(page)[0]


SHELL_COMMANDS = [c for b in all_blocks() if b.language in SHELL_LANGUAGES for c in shell_commands(b)]
PYTHON_BLOCKS = [b for b in all_blocks() if b.language in ("python", "py")]


def _ours(command):
    """(kind, program, arguments) for a command this test checks, else None."""
    words = command.words
    for index, word in enumerate(words):
        if word in ("python", "python3") and index + 1 < len(words):
            target, rest = words[index + 1], words[index + 2:]
            if target == "-m" and rest:
                return "module", rest[0], rest[1:]
            if target == "-c" and rest:
                return "code", rest[0], rest[1:]
            if target.endswith(".py"):
                return "script", target, rest
        if word.startswith("ltpa-"):
            return "entry", word, words[index + 1:]
        if word in ("bash", "sh") and index + 1 < len(words) and words[index + 1].endswith(".sh"):
            return "shell", words[index + 1], words[index + 2:]
        if word in ("pip", "pip3") and words[index + 1:index + 2] == ["install"]:
            return "pip", word, words[index + 2:]
    return None


CHECKED = [c for c in SHELL_COMMANDS if _ours(c)]


# --- Parsers, captured without running anything -----------------------------


class _Captured(Exception):
    def __init__(self, parser):
        super().__init__(parser.prog)
        self.parser = parser


@contextlib.contextmanager
def _capturing_parsers(argv, path_entry=None):
    """Stops the first argparse parse with the parser, before it parses."""

    def capture(self, args=None, namespace=None):
        raise _Captured(self)

    original, saved_argv = argparse.ArgumentParser.parse_known_args, sys.argv
    argparse.ArgumentParser.parse_known_args = capture
    sys.argv = argv
    if path_entry:
        sys.path.insert(0, path_entry)
    try:
        yield
    finally:
        argparse.ArgumentParser.parse_known_args = original
        sys.argv = saved_argv
        if path_entry:
            sys.path.remove(path_entry)


def _captured_parser(run, argv, path_entry=None):
    try:
        with _capturing_parsers(argv, path_entry):
            run()
    except _Captured as captured:
        return captured.parser
    except SystemExit as stop:
        pytest.fail(f"{argv[0]} exited ({stop.code}) before parsing its arguments")
    pytest.fail(f"{argv[0]} ran without an argparse parser")


@functools.lru_cache(maxsize=None)
def script_parser(path):
    path = REPO_ROOT / path
    return _captured_parser(
        lambda: runpy.run_path(str(path), run_name="__main__"),
        [str(path), "--help"], str(path.parent),
    )


@functools.lru_cache(maxsize=None)
def module_parser(module):
    return _captured_parser(
        lambda: runpy.run_module(module, run_name="__main__", alter_sys=True), [module, "--help"]
    )


def console_scripts():
    """[project.scripts] of pyproject.toml as {name: "module:function"}."""
    text = (REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8")
    section = re.search(r"^\[project\.scripts\]\s*$(.*?)(?=^\[|\Z)", text, re.M | re.S)
    if section is None:
        return None
    return dict(re.findall(r'^\s*"?([\w.-]+)"?\s*=\s*"([^"]+)"', section.group(1), re.M))


@functools.lru_cache(maxsize=None)
def entry_parser(name):
    scripts = console_scripts()
    if scripts is None:
        pytest.skip("pyproject.toml declares no [project.scripts] yet")
    assert name in scripts, f"{name} is not a console script of pyproject.toml ({sorted(scripts)})"
    module, _, function = scripts[name].partition(":")
    entry = functools.reduce(getattr, function.split("."), importlib.import_module(module))
    return _captured_parser(entry, [name, "--help"])


@functools.lru_cache(maxsize=None)
def module_help(module):
    """`python -m MODULE --help`, run once in an empty folder."""
    with tempfile.TemporaryDirectory() as folder:
        result = subprocess.run(
            [sys.executable, "-m", module, "--help"], cwd=folder, capture_output=True,
            text=True, timeout=300,
        )
    assert result.returncode == 0, f"python -m {module} --help failed:\n{result.stderr[-2000:]}"
    return result.stdout


def parse(parser, arguments):
    """Runs the real parser over the command's arguments; returns the
    namespace (None after --help), or fails with the parser's message."""
    arguments = [
        "0" if SHELL_VARIABLE.match(a) else a for a in arguments if a != "..."
    ]
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            return parser.parse_args(arguments)
    except SystemExit as stop:
        if stop.code in (0, None):
            return None
        pytest.fail(f"{parser.prog} refuses {arguments}: {stderr.getvalue().strip()}")


def reads_tfds(parser, namespace):
    """Whether the parsed command reads a tensorflow-datasets set (a download
    on first use): fit.py's default, or --dataset."""
    if namespace is None or not hasattr(namespace, "data_dir"):
        return False
    if getattr(namespace, "dataset", None):
        return True
    return parser.prog.startswith(("fit", "ltpa-fit")) and namespace.data_dir is None


def check_flags_in_help(help_text, arguments):
    for argument in arguments:
        if argument.startswith("--"):
            flag = argument.split("=", 1)[0]
        elif re.match(r"^-[A-Za-z]", argument):
            flag = argument[:2]
        else:
            if "/" in argument or argument.endswith(".py"):
                assert (REPO_ROOT / argument.split("::")[0]).exists(), f"no such path: {argument}"
            continue
        assert re.search(rf"(^|[\s,]){re.escape(flag)}([\s,=]|$)", help_text, re.M), (
            f"{flag} is not an option (not in --help)"
        )


def check_pip(arguments):
    extras = re.findall(r"\[([\w,\s-]+)\]", " ".join(arguments))
    text = (REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8")
    section = re.search(r"^\[project\.optional-dependencies\]\s*$(.*?)(?=^\[|\Z)", text, re.M | re.S)
    declared = set(re.findall(r"^\s*([\w-]+)\s*=", section.group(1), re.M)) if section else set()
    for extra in (e.strip() for group in extras for e in group.split(",")):
        assert extra in declared, f"extra [{extra}] is not in pyproject.toml ({sorted(declared)})"


# --- The commands ------------------------------------------------------------


def test_the_pages_hold_commands():
    assert len(CHECKED) >= 20, [c.ident() for c in CHECKED]
    assert {p.name for p in PAGES} >= {"README.md", "training.md", "serving.md", "tests.md"}


@pytest.mark.parametrize("command", CHECKED, ids=lambda c: c.ident())
def test_command_parses(command):
    kind, program, arguments = _ours(command)
    for word in command.words:
        if word.startswith("KERAS_BACKEND="):
            assert word.split("=", 1)[1] in BACKENDS, f"unknown backend in {word}"
    namespace, parser = None, None
    if kind == "script":
        assert (REPO_ROOT / program).is_file(), f"no such script: {program}"
        parser = script_parser(program)
        namespace = parse(parser, arguments)
    elif kind == "entry":
        parser = entry_parser(program)
        namespace = parse(parser, arguments)
    elif kind == "module":
        if program.split(".")[0] == "keras_ltpa":
            parser = module_parser(program)
            namespace = parse(parser, arguments)
        else:
            check_flags_in_help(module_help(program), arguments)
    elif kind == "code":
        compile(program, f"{command.ident()} (python -c)", "exec")
    elif kind == "shell":
        assert (REPO_ROOT / program).is_file(), f"no such script: {program}"
        result = subprocess.run(
            ["bash", "-n", str(REPO_ROOT / program)], capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, result.stderr
    elif kind == "pip":
        check_pip(arguments)
        assert "needs network" in command.markers, f"say '# needs network' for: {command.text}"
    if reads_tfds(parser, namespace):
        assert "needs network" in command.markers, (
            f"reads a tensorflow-datasets set; say '# needs network' for: {command.text}"
        )


@pytest.mark.parametrize(
    "command",
    [c for c in SHELL_COMMANDS if c.words and c.words[0] in ("docker", "curl")],
    ids=lambda c: c.ident(),
)
def test_docker_and_client_commands_say_what_they_need(command):
    wanted = "needs docker" if command.words[0] == "docker" else "needs a server"
    assert wanted in command.markers, f"say '# {wanted}' for: {command.text}"


# --- Running the commands ------------------------------------------------------

# Paths the pages name that a clone does not hold, and what a run reads
# instead: the committed fixtures (tests/fixtures/data, the layout of
# ../shared/data) and image folders from them.
SUBSTITUTIONS = (
    ("../shared/data", SMALL_DATA_DIR),
    ("path/to/images", SMALL_DATA_DIR / "cifar10"),  # DIR/train/<class>, DIR/test/<class>
    ("/data/flowers", SMALL_DATA_DIR / "cifar10"),
    ("/data/photos", SMALL_DATA_DIR / "cifar10" / "train"),  # DIR/<class>/*.jpg
)
# Appended to each fit command of a `tiny` block (argparse keeps the last value).
TINY_OVERRIDE = [
    "--epochs", "1", "--steps-per-epoch", "1", "--limit", "32", "--test-limit", "16",
    "--batch-size", "16", "--no-export", "--no-tensorboard", "--jit-compile", "off",
]
OUTPUT_FLAGS = ("--output", "--output-dir", "--report-dir")
RUN_DIR = re.compile(r"^runs/[\w.-]+")
NEEDS = re.compile(r"\bneeds\b", re.IGNORECASE)
# A command runs in about 10 s (start-up, a tiny model); a stuck one fails.
RUN_TIMEOUT = 300


def _block_id(block):
    return f"{_rel(block.page)}:{block.line}"


def _is_fit(command):
    found = _ours(command)
    return bool(found) and (found[1].endswith("fit.py") or found[1] == "ltpa-fit")


MARKED_BLOCKS = list({id(c.block): c.block for c in CHECKED}.values())
RUN_BLOCKS = [b for b in MARKED_BLOCKS if b.run and b.run[0] in ("short", "tiny")]


def _runnable(block):
    """The commands of ours a short/tiny block runs: those not marked `needs ...`."""
    return [c for c in CHECKED if c.block is block and not NEEDS.search(c.comment)]


@pytest.mark.parametrize("block", MARKED_BLOCKS, ids=_block_id)
def test_each_command_block_says_how_it_is_checked(block):
    where = _block_id(block)
    assert block.run, (
        f"{where}: say before the block how it is checked: `<!-- run: short -->` (runs as "
        "written), `<!-- run: tiny (why) -->` (fit with one step) or `<!-- run: parse (why) -->`"
    )
    mode, reason = block.run
    assert mode in RUN_MODES, f"{where}: run: {mode} is not one of {RUN_MODES}"
    if mode == "parse":
        assert reason, f"{where}: say why the block is only parsed: <!-- run: parse (why) -->"
        return
    runnable = _runnable(block)
    assert runnable, f"{where}: every command needs something; mark the block run: parse (why)"
    for command in runnable:
        kind = _ours(command)[0]
        assert kind in ("script", "entry", "module", "code"), (
            f"{where}: a {kind} command does not run here; mark the block run: parse (why)"
        )
        assert not (kind == "module" and _ours(command)[1] == "pytest"), (
            f"{where}: the test suite does not run inside itself; mark the block run: parse (why)"
        )
        if mode == "short":
            assert "long" not in command.markers, f"{where}: a long command: run: tiny or parse"
    if mode == "tiny":
        assert reason, f"{where}: say what the tiny override shortens: <!-- run: tiny (why) -->"
        assert any(_is_fit(c) for c in runnable), f"{where}: run: tiny shortens fit commands; none here"


def _substitute(word):
    flag, equals, value = word.partition("=") if word.startswith("--") and "=" in word else ("", "", word)
    for written, actual in SUBSTITUTIONS:
        if value == written or value.startswith(written + "/"):
            value = str(actual) + value[len(written):]
            break
    return f"{flag}{equals}{value}" if equals else value


def _argv(command, tiny):
    """The command as a process to start: our interpreter, the repository's
    scripts, the substituted paths, and the tiny override for fit."""
    kind, program, arguments = _ours(command)
    env = dict(w.split("=", 1) for w in command.words if ENV_ASSIGNMENT.match(w))
    arguments = [_substitute(a) for a in arguments]
    if tiny and _is_fit(command):
        arguments = [*arguments, *TINY_OVERRIDE]
    if kind == "script":
        head = [sys.executable, str(REPO_ROOT / program)]
    elif kind == "entry":
        installed = pathlib.Path(sys.executable).with_name(program)
        module, _, function = console_scripts()[program].partition(":")
        head = [str(installed)] if installed.exists() else [
            sys.executable, "-c", f"import sys; from {module} import {function}; sys.exit({function}())"
        ]
    elif kind == "module":
        head = [sys.executable, "-m", program]
    else:
        head = [sys.executable, "-c", program]
    return head + arguments, env


def _write_inputs(folder):
    """The files the pages name as a reader's own: photo.jpg, more_photos/,
    cat.jpg and cat.png (CIFAR-10 fixture images)."""
    import shutil

    from PIL import Image

    cats = sorted((SMALL_DATA_DIR / "cifar10" / "test" / "cat").iterdir())
    shutil.copy(cats[0], folder / "photo.jpg")
    shutil.copy(cats[1], folder / "cat.jpg")
    Image.open(cats[2]).save(folder / "cat.png")
    (folder / "more_photos").mkdir()
    for path in cats[3:5]:
        shutil.copy(path, folder / "more_photos" / path.name)


@pytest.fixture(scope="module")
def stand_in_models(tmp_path_factory):
    """The shipped presets saved as `.keras` files: what a finished run
    directory holds."""
    import keras_ltpa

    folder = tmp_path_factory.mktemp("stand_in_models")
    paths = {}
    for name in ("cifar10-att3-w0125", "cifar10-vgg-w0125"):
        paths[name] = folder / f"{name}.keras"
        keras_ltpa.load_preset(name).save(paths[name])
    return paths


def _stand_in_run(run_dir, models):
    """A run directory holding a shipped preset's model.keras, standing in for
    the `runs/NAME` an earlier (network or long) command of a page trains: the
    plain VGG preset for a `noatt` name (a baseline), else the attention one."""
    import shutil

    preset = "cifar10-vgg-w0125" if "noatt" in run_dir.name else "cifar10-att3-w0125"
    run_dir.mkdir(parents=True)
    shutil.copy(models[preset], run_dir / "model.keras")


@pytest.mark.slow
@pytest.mark.tf_only
@pytest.mark.parametrize("block", RUN_BLOCKS, ids=_block_id)
def test_command_block_runs(block, tmp_path, stand_in_models):
    """The block's commands, in order, in an empty folder (with the inputs a
    reader brings): each exits 0 and writes what its --output, --output-dir
    or --report-dir names."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    _write_inputs(cwd)
    for command in _runnable(block):
        argv, env = _argv(command, tiny=block.run[0] == "tiny")
        stdout_file = None
        if ">" in argv:
            at = argv.index(">")
            argv, stdout_file = argv[:at], cwd / argv[at + 1]
        outputs = [argv[i + 1] for i, a in enumerate(argv[:-1]) if a in OUTPUT_FLAGS]
        for index, word in enumerate(argv):
            match = RUN_DIR.match(word)
            if match and argv[index - 1] not in OUTPUT_FLAGS and not (cwd / match.group()).exists():
                _stand_in_run(cwd / match.group(), stand_in_models)
        result = subprocess.run(
            argv, cwd=cwd, capture_output=True, text=True, timeout=RUN_TIMEOUT,
            env=dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="2", **env),
        )
        assert result.returncode == 0, f"{command.ident()}: exit {result.returncode}\n{result.stderr[-3000:]}"
        if stdout_file is not None:
            stdout_file.write_text(result.stdout)
        for output in outputs:
            assert (cwd / output).exists(), f"{command.ident()}: wrote no {output}"


def test_readme_keeps_its_two_commands_and_the_comparison_block():
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    assert README_TEST_COMMAND in text
    assert "pip install -e . && python training/fit.py" in text
    start, end = "<!-- comparison:start -->", "<!-- comparison:end -->"
    assert text.count(start) == 1 and text.count(end) == 1
    assert text.index(start) < text.index(end)
    assert len(text.splitlines()) <= 320, "the README should stay near 300 lines; move detail to docs/"


def test_the_checker_reads_comments_continuations_and_separators(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "```bash\n"
        "# needs network\n"
        "python training/fit.py --dataset cifar10 \\\n"
        "    --epochs 1 && echo done   # it's a trailing comment\n"
        "KERAS_BACKEND=jax python -m pytest -q\n"
        "\n"
        "python training/fit.py --data-dir d --process-id $rank ...\n"
        "```\n"
    )
    (block,) = fenced_blocks(page)[0]
    commands = list(shell_commands(block))
    assert [c.words[0] for c in commands] == ["python", "echo", "KERAS_BACKEND=jax", "python"]
    assert commands[0].words == ["python", "training/fit.py", "--dataset", "cifar10", "--epochs", "1"]
    assert [c.markers for c in commands] == [{"needs network"}] * 3 + [set()]
    assert "trailing comment" in commands[1].comment
    parser = script_parser("training/fit.py")
    assert reads_tfds(parser, parse(parser, _ours(commands[0])[2]))
    assert not reads_tfds(parser, parse(parser, _ours(commands[3])[2]))


def test_the_checker_reads_run_markers_and_substitutes_paths(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "<!-- run: tiny (300 epochs) -->\n\n"
        "```bash\npython training/fit.py --data-dir path/to/images --epochs 300\n```\n\n"
        "```bash\npython training/export.py runs/x --name ltpa\n```\n"
    )
    first, second = fenced_blocks(page)[0]
    assert first.run == ("tiny", "300 epochs") and second.run is None  # No carrying over.
    (command,) = shell_commands(first)
    argv, env = _argv(command, tiny=True)
    assert argv[:2] == [sys.executable, str(REPO_ROOT / "training" / "fit.py")] and env == {}
    assert argv[2:6] == ["--data-dir", str(SMALL_DATA_DIR / "cifar10"), "--epochs", "300"]
    assert argv[6:] == TINY_OVERRIDE
    assert _substitute("--data-dir=../shared/data/cifar10") == f"--data-dir={SMALL_DATA_DIR}/cifar10"
    assert _substitute("../shared/database") == "../shared/database"


@pytest.mark.parametrize("arguments", [["--no-such-flag"], ["--precision", "float64"], ["--epochs", "x"]])
def test_the_checker_refuses_a_bad_flag_or_value(arguments):
    with pytest.raises(pytest.fail.Exception, match="fit.py refuses"):
        parse(script_parser("training/fit.py"), arguments)
    with pytest.raises(AssertionError):
        check_flags_in_help("  -q, --quiet   decrease verbosity.", ["--no-such-flag"])


# --- Python blocks -----------------------------------------------------------


def resolve(dotted):
    """Imports the longest importable prefix of `dotted` and follows the rest
    as attributes; fails naming what is missing."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            value = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError as error:
            if error.name and not dotted.startswith(error.name):
                raise
            continue
        for name in parts[cut:]:
            assert hasattr(value, name), f"{dotted}: {'.'.join(parts[:cut])} has no {name!r}"
            value = getattr(value, name)
        return value
    pytest.fail(f"{dotted} does not import")


def _names_used(tree):
    """The keras_ltpa names a block imports, and those it reads as attributes
    of an imported keras_ltpa name."""
    names, aliases = set(), {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "keras_ltpa":
                    names.add(alias.name)
                    if alias.asname:
                        aliases[alias.asname] = alias.name
                    else:
                        aliases["keras_ltpa"] = "keras_ltpa"
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "keras_ltpa":
            for alias in node.names:
                names.add(f"{node.module}.{alias.name}")
                aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            chain, value = [], node
            while isinstance(value, ast.Attribute):
                chain.append(value.attr)
                value = value.value
            if isinstance(value, ast.Name) and value.id in aliases:
                names.add(".".join([aliases[value.id], *reversed(chain)]))
    return names


@pytest.mark.parametrize("block", PYTHON_BLOCKS, ids=lambda b: f"{_rel(b.page)}:{b.line}")
def test_python_block_compiles_and_its_names_exist(block):
    tree = ast.parse("\n".join(block.lines), f"{_rel(block.page)}:{block.line}")
    for name in sorted(_names_used(tree)):
        resolve(name)


# --- Links and names in the text ---------------------------------------------

LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_LINK = re.compile(r"^\s*\[[^\]]+\]:\s*(\S+)", re.M)
CODE_SPAN = re.compile(r"`((?:[^`\n]|\n(?!\s*\n))+)`")
DOTTED_NAME = re.compile(r"^(keras_ltpa(?:\.[A-Za-z_]\w*)*)")
REPO_PATH = re.compile(r"^(?:keras_ltpa|training|benchmarks|tests|saved_models|docs|\.ci)/[\w./-]*$")


def slug(heading):
    """The anchor a Markdown heading gets (GitHub's rule)."""
    text = re.sub(r"`|\*\*|\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


@functools.lru_cache(maxsize=None)
def anchors(page):
    _, prose = fenced_blocks(page)
    seen, result = {}, set()
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*#*\s*$", prose, re.M):
        base = slug(heading)
        count = seen.get(base, 0)
        seen[base] = count + 1
        result.add(base if count == 0 else f"{base}-{count}")
    return result


def _prose_without_code(page):
    return CODE_SPAN.sub("", fenced_blocks(page)[1])


@pytest.mark.parametrize("page", LINKED_PAGES, ids=_rel)
def test_relative_links_resolve(page):
    prose = _prose_without_code(page)
    targets = LINK.findall(prose) + REFERENCE_LINK.findall(prose)
    broken = []
    for target in targets:
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):
            continue  # http:, https:, mailto:
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(f"{target}: no such file")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            broken.append(f"{target}: no heading #{anchor} in {_rel(file)}")
    assert not broken, broken


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_named_modules_and_paths_exist(page):
    missing = []
    for span in CODE_SPAN.findall(fenced_blocks(page)[1]):
        span = " ".join(span.split())
        match = DOTTED_NAME.match(span)
        if match:
            try:
                resolve(match.group(1).rstrip("."))
            except (AssertionError, ImportError, pytest.fail.Exception) as error:
                missing.append(f"{span}: {error}")
        elif REPO_PATH.match(span) and not (REPO_ROOT / span).exists():
            missing.append(f"{span}: no such path")
    assert not missing, missing
