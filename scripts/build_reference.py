"""Write the reference pages under docs/reference/ from the code itself: every CLI flag from the argparse
parser, every model's configuration from its config dataclass.

    python scripts/build_reference.py          # rewrite docs/reference/cli.md and models.md
    python scripts/build_reference.py --check  # exit 1 if they differ from what the code gives (the tests run this)
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import sys
import typing
from pathlib import Path

REFERENCE = Path(__file__).resolve().parents[1] / "docs" / "reference"
HEADER = "<!-- written by scripts/build_reference.py from the code; edit the code, not this page -->\n\n"


def _cell(text) -> str:
    return " ".join(inspect.cleandoc(str(text)).split()).replace("|", "\\|")


def _flag_rows(parser: argparse.ArgumentParser) -> list[str]:
    rows = ["| flag | default | what it does |", "| --- | --- | --- |"]
    for action in parser._actions:
        if not action.option_strings or action.dest == "help":
            continue
        flags = ", ".join(f"`{s}`" for s in action.option_strings)
        if action.metavar or action.nargs not in (0, None) or action.choices:
            choices = f" {{{','.join(map(str, action.choices))}}}" if action.choices else ""
            flags += f" {action.metavar or action.dest.upper()}{choices}" if not choices else choices
        default = "" if action.default in (None, False, argparse.SUPPRESS) else f"`{action.default}`"
        rows.append(f"| {flags} | {default} | {_cell((action.help or '').replace('%%', '%'))} |")
    return rows


def cli_reference() -> str:
    from recvae.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    lines = [HEADER + "# Command-line reference", "",
             "Every `recvae` command and flag, as `recvae COMMAND --help` gives them. Common to every command: "
             "`-v` (every log line), `-q` (results and errors only), `--threads N`.", ""]
    for name, command in sub.choices.items():
        lines += [f"## recvae {name}", "", _cell(command.description or command.format_usage()), "", *_flag_rows(command), ""]
    return "\n".join(lines)


def _type_name(kind) -> str:
    return getattr(kind, "__name__", None) if typing.get_origin(kind) is None else str(kind).replace("typing.", "")


def models_reference() -> str:
    from recvae.models import REGISTRY

    lines = [HEADER + "# Model reference", "",
             "Every model's hyperparameters: the fields of its frozen config dataclass, passed to the model "
             "(`MultVAE(latent_dim=100)`), as `recvae train --model NAME --field-name VALUE`, or under `params` in a "
             "benchmark file. Defaults are the papers' (or the library's, for implicit's models).", ""]
    for name, cls in REGISTRY.items():
        config = cls.config_class
        hints = typing.get_type_hints(config)
        lines += [f"## {name}", "", _cell(cls.__doc__ or ""), "", f"`{config.__name__}`: {_cell(config.__doc__ or '')}", "",
                  "| field | flag | type | default |", "| --- | --- | --- | --- |"]
        for field in dataclasses.fields(config):
            default = field.default if field.default is not dataclasses.MISSING else field.default_factory()
            flag = f"`--{field.name.replace('_', '-')}`" if name != "RecBole" else "(benchmark files)"
            lines.append(f"| `{field.name}` | {flag} | `{_cell(_type_name(hints[field.name]))}` | `{_cell(repr(default))}` |")
        lines.append("")
    return "\n".join(lines)


PAGES = {"cli.md": cli_reference, "models.md": models_reference}


def main() -> int:
    check = "--check" in sys.argv[1:]
    stale = []
    for name, build in PAGES.items():
        text = build()
        path = REFERENCE / name
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(str(path))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    if stale:
        print(f"stale reference pages: {stale}; run python scripts/build_reference.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
