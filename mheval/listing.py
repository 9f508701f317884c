"""`mheval adapters` and `mheval metrics`: what is installed (built in or from plug-ins) and the options each takes."""
from __future__ import annotations

import argparse
import shutil
import textwrap

from mheval.metrics.options import describe_options
from mheval.registry import Registry


def registry_lines(registry: Registry, width: int = 100) -> list[str]:
    """Per entry: its name, where it comes from and what it does, then one line per option."""
    lines = []
    for name in registry.names():
        cls = registry.get(name)
        lines.append(f"{name}  ({registry.sources.get(name, '?')})")
        lines += textwrap.wrap(cls.description, width, initial_indent="    ", subsequent_indent="    ")
        options = describe_options(cls.options_class)
        if not options:
            lines.append("    options: none")
        column = max((len(option.name) for option in options), default=0)
        for option in options:
            choices = f" (one of {', '.join(map(str, option.choices))})" if option.choices else ""
            head = f"    {option.name:<{column}}  {option.type}, default {option.default!r}: "
            lines += textwrap.wrap(option.help + choices, width, initial_indent=head,
                                   subsequent_indent=" " * min(len(head), width // 2))
        lines.append("")
    return lines


def print_registry(registry: Registry, usage: str) -> int:
    width = max(60, min(shutil.get_terminal_size((100, 24)).columns, 120) - 1)
    print(usage)
    print()
    print("\n".join(registry_lines(registry, width)))
    for name, reason in sorted(registry.broken.items()):
        print(f"plug-in {name!r} could not be loaded: {reason}")
    return 0


def cmd_adapters(args: argparse.Namespace) -> int:
    from mheval.adapters import adapter_registry

    return print_registry(adapter_registry, "adapters: use as --models [LABEL=]NAME[:ARG], options as "
                                            "--model-option LABEL.OPTION=VALUE")


def cmd_metrics(args: argparse.Namespace) -> int:
    from mheval.metrics import metric_registry

    return print_registry(metric_registry, "metrics: use as --metrics NAME, options as "
                                           "--metric-option NAME.OPTION=VALUE")


def add_listing_parsers(sub) -> None:
    for name, handler, what in (("adapters", cmd_adapters, "model adapters"), ("metrics", cmd_metrics, "metrics")):
        parser = sub.add_parser(
            name, help=f"list the installed {what} and their options",
            description=f"List the {what} mheval knows — built in, and those that installed packages register "
                        f"through the 'mheval.{name}' entry point group — with each option's type, default and "
                        f"help. Plug-ins that fail to load are listed with the reason.")
        parser.set_defaults(handler=handler)
