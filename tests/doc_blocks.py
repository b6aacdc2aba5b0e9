"""The commands a docs page prints, for the tests that run a page as a user would."""

from __future__ import annotations

import re
import shlex
from pathlib import Path


def page_commands(page: Path, program: str = "umgkit") -> list[list[str]]:
    """The ``program ...`` lines of the page's bash blocks (arguments only), continuation lines joined and
    comments dropped."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", page.read_text(encoding="utf-8"), flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            argv = shlex.split(line, comments=True)
            if argv and argv[0] == program:
                commands.append(argv[1:])
    return commands
