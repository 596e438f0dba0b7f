"""Policy files: YAML in, the JSON body of ``POST /api/v1/policies`` out; and back.

A file holds ``policies: [...]``, a single policy (a mapping with ``name``), or several YAML
documents of either kind. Only the syntax is checked here: esmd validates the content and
answers with the offending field path (``policies[1].rules.malware.mode: ...``). PyYAML is
imported only by the policy verbs.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

from trapsapi.errors import UsageError

SPEC_ORDER = ("name", "description", "priority", "enabled", "targets", "rules")


def _loader() -> Any:
    """A safe loader where only true/false are booleans: ``mode: off`` stays the string
    "off" (YAML 1.1 would read off/on/yes/no as booleans)."""
    import re

    import yaml

    class Loader(yaml.SafeLoader):
        pass

    resolvers = {
        first: [(tag, regex) for tag, regex in entries if tag != "tag:yaml.org,2002:bool"]
        for first, entries in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    Loader.yaml_implicit_resolvers = resolvers
    Loader.add_implicit_resolver(
        "tag:yaml.org,2002:bool",
        re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
        list("tTfF"),
    )
    return Loader


def load_text(text: str, source: str) -> dict[str, Any]:
    """``{"policies": [...]}`` from YAML text; UsageError naming the file and line."""
    import yaml

    try:
        documents = [d for d in yaml.load_all(text, Loader=_loader()) if d is not None]
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "?"
        raise UsageError(f"{source}: {where}: {exc.problem or exc}") from None
    except yaml.YAMLError as exc:
        raise UsageError(f"{source}: not YAML: {exc}") from None
    policies: list[Any] = []
    for index, document in enumerate(documents):
        if isinstance(document, dict) and "policies" in document:
            if set(document) != {"policies"}:
                extra = sorted(set(document) - {"policies"})[0]
                raise UsageError(f"{source}: {extra}: unknown field (next to 'policies')")
            if not isinstance(document["policies"], list):
                raise UsageError(f"{source}: policies: must be a list")
            policies.extend(document["policies"])
        elif isinstance(document, dict):
            policies.append(document)
        else:
            raise UsageError(
                f"{source}: document {index + 1} must be a policy or a 'policies' list"
            )
    if not policies:
        raise UsageError(f"{source}: no policies in the file")
    return {"policies": policies}


def load_file(path: str) -> dict[str, Any]:
    """Read ``path`` (``-`` for stdin) as a policy file."""
    import sys

    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise UsageError(f"{path}: not UTF-8 text") from None
    return load_text(text, "stdin" if path == "-" else path)


def spec(policy: dict[str, Any]) -> dict[str, Any]:
    """A server policy record reduced to what a file holds, in the documented key order."""
    return {key: policy[key] for key in SPEC_ORDER if key in policy}


def dump(policies: list[dict[str, Any]]) -> str:
    import yaml

    body = {"policies": [spec(p) for p in policies]}
    text: str = yaml.safe_dump(body, sort_keys=False, default_flow_style=False, width=100)
    return text


def unified_diff(change: dict[str, Any]) -> str:
    """One policy's change (from a dry-run apply) as a unified diff of its YAML."""
    name = change["name"]
    before = dump([change["before"]]).splitlines(keepends=True) if change.get("before") else []
    after = dump([change["after"]]).splitlines(keepends=True) if change.get("after") else []
    return "".join(difflib.unified_diff(before, after, f"server/{name}", f"file/{name}"))
