"""``aero completion bash|zsh|tcsh``: a shell completion script generated from the parser
by shtab (docs/dependencies.md), so it always knows every command and option.

Arguments marked with :func:`aero.cli.common.mark_path` complete file (or directory) names.
"""

from __future__ import annotations

import argparse

from aero.cli.common import EXIT_OK, CliError

SHELLS = ("bash", "zsh", "tcsh")


def add_completion(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("completion", help="print a shell completion script (bash, zsh, tcsh)",
                       description="Print a completion script for SHELL. bash: "
                                   "`source <(aero completion bash)` or save it in "
                                   "~/.local/share/bash-completion/completions/aero; zsh: save "
                                   "it as _aero in a directory of $fpath; tcsh: "
                                   "`eval \"`aero completion tcsh`\"`.")
    p.add_argument("shell", choices=SHELLS, help="the shell: bash, zsh or tcsh")
    p.set_defaults(func=cmd_completion)


def completion_script(shell: str) -> str:
    """The completion script for ``shell``, from the whole ``aero`` parser."""
    try:
        import shtab
    except ImportError:
        raise CliError("shell completion needs the shtab package: pip install shtab") from None
    from aero.cli import build_parser

    parser = build_parser()
    kinds = {"file": shtab.FILE, "dir": shtab.DIRECTORY}
    for p in _parsers(parser):
        for action in p._actions:
            kind = getattr(action, "aero_complete", None)
            if kind in kinds:
                action.complete = kinds[kind]  # type: ignore[attr-defined]
    return shtab.complete(parser, shell=shell)


def _parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """``parser`` and every sub-parser below it."""
    out = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):
                out += _parsers(child)
    return out


def cmd_completion(args: argparse.Namespace) -> int:
    print(completion_script(args.shell), end="")
    return EXIT_OK


COMMANDS = (add_completion,)
