"""The README's code blocks, as the README test runs them.

Each Python or shell block of README.md is run as written, unless the HTML comment on the line
before it says otherwise:

    <!-- readme-test: needs paramstore -->       run against servers the test starts first
    <!-- readme-test: needs moto, etcd -->        (paramstore, moto, etcd; comma-separated)
    <!-- readme-test: needs cluster -->           three replicas on etcd and moto, at the
                                                  README's three paramstore addresses
    <!-- readme-test: serves -->                  a shell block that starts servers and keeps
                                                  running: it must answer on 127.0.0.1:50051
    <!-- readme-test: commands exist -->          checked, not run: `make T` as `make -n T`,
                                                  any other command as `COMMAND --help`
    <!-- readme-test: skip -->                    cannot run on one machine (AWS, production)

Directives combine with `;` (`serves; needs etcd`). A block without a comment needs nothing.
A plain fence right after a Python block is what the block prints.

The README's addresses are replaced by those of the servers the test starts, on free ports:
paramstore `127.0.0.1:50051` (and `:50052`, `:50053` for more replicas), moto
`http://127.0.0.1:5000` (`-p 5000` on moto_server's command line), etcd `127.0.0.1:2379`
(peers `:2380`), and `.venv/bin/` by the folder of the Python running the tests.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, replace
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"
LANGUAGES = {"python": "python", "py": "python", "sh": "shell", "bash": "shell",
             "shell": "shell", "console": "shell"}
SERVICES = ("paramstore", "moto", "etcd", "cluster")
MODES = ("run", "serves", "commands exist", "skip")
PARAMSTORE_ADDRESS = "127.0.0.1:50051"
# The README's spelling of each address -> the port it stands for, by name.
README_ADDRESSES = {
    "127.0.0.1:50051": "paramstore",
    "127.0.0.1:50052": "replica-2",
    "127.0.0.1:50053": "replica-3",
    "http://127.0.0.1:5000": "moto",
    "-p 5000": "moto",
    "127.0.0.1:2379": "etcd",
    "127.0.0.1:2380": "etcd-peers",
}

_ANNOTATION = re.compile(r"<!--\s*readme-test:(.*?)-->")
_FENCE = re.compile(r"^```(\S*)\s*$")


class AnnotationError(ValueError):
    """A `readme-test` comment the runner does not understand."""


@dataclass(frozen=True)
class Block:
    """One runnable block: where it starts, its language and code, what to do with it."""

    line: int
    language: str  # "python" or "shell"
    code: str
    mode: str = "run"
    needs: frozenset[str] = frozenset()
    output: str | None = None  # what the block prints, from the plain fence after it

    @property
    def name(self) -> str:
        return f"line{self.line}-{self.language}"


def parse_annotation(text: str, line: int) -> tuple[str, frozenset[str]]:
    """The mode and the services of a `readme-test:` comment's text."""
    mode, needs = "run", set()
    for directive in filter(None, (part.strip() for part in text.split(";"))):
        if directive.startswith("needs "):
            wanted = {name.strip() for name in directive[len("needs "):].split(",")}
            unknown = wanted - set(SERVICES)
            if unknown:
                raise AnnotationError(f"README line {line}: unknown service(s) "
                                      f"{sorted(unknown)}; known: {', '.join(SERVICES)}")
            needs |= wanted
        elif directive in MODES or directive.startswith("skip"):
            mode = "skip" if directive.startswith("skip") else directive
        else:
            raise AnnotationError(f"README line {line}: unknown readme-test directive "
                                  f"{directive!r}; known: needs SERVICE, {', '.join(MODES)}")
    return mode, frozenset(needs)


def readme_blocks(text: str) -> list[Block]:
    """Every Python and shell block of a README's text, with its annotation (skipped blocks
    included). Raises `AnnotationError` for a comment it cannot follow."""
    lines = text.splitlines()
    blocks: list[Block] = []
    number, last_end = 0, -1  # last_end: the closing fence of the last runnable block
    while number < len(lines):
        fence = _FENCE.match(lines[number])
        if fence is None:
            number += 1
            continue
        start, language = number, fence.group(1).lower()
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("```")),
                   len(lines))
        code = "\n".join(lines[start + 1:end]) + "\n"
        number = end + 1
        annotation = _ANNOTATION.search(lines[start - 1]) if start else None
        if language not in LANGUAGES:
            if annotation is not None:
                raise AnnotationError(f"README line {start + 1}: a readme-test comment on a "
                                      f"{language or 'plain'} block, which is never run")
            right_after = blocks and not any(line.strip() for line in lines[last_end + 1:start])
            if language == "" and right_after and blocks[-1].language == "python":
                blocks[-1] = replace(blocks[-1], output=code)
            continue
        mode, needs = parse_annotation(annotation.group(1), start) if annotation else ("run",
                                                                                      frozenset())
        if mode in ("serves", "commands exist") and LANGUAGES[language] != "shell":
            raise AnnotationError(f"README line {start + 1}: '{mode}' is for shell blocks")
        blocks.append(Block(start + 1, LANGUAGES[language], code, mode, needs))
        last_end = end
    return blocks


def substitute(code: str, addresses: dict[str, str]) -> str:
    """`code` with each README address replaced (`addresses`: README spelling -> actual), in
    one pass, so a replaced address is never replaced again."""
    if not addresses:
        return code
    pattern = "|".join(re.escape(key) + r"(?!\d)"
                       for key in sorted(addresses, key=len, reverse=True))
    return re.sub(pattern, lambda found: addresses[found.group()], code)


def commands(code: str) -> list[list[str]]:
    """The commands of a shell block: comments dropped, continuation lines joined."""
    joined = re.sub(r"\\\n", " ", code)
    found = []
    for line in joined.splitlines():
        words = shlex.split(line, comments=True)
        if words:
            found.append(words)
    return found


def check_command(words: list[str]) -> list[str]:
    """The command that shows `words` exist without running them: `make -n TARGETS` (make's
    dry run), else the command's words before its first option, then `--help`."""
    if words[0] == "make":
        return ["make", "-n", *words[1:]]
    leading = []
    for word in words:
        if word.startswith("-") or word.isupper():  # an option, or a placeholder such as FILE
            break
        leading.append(word)
    return [*leading, "--help"]
