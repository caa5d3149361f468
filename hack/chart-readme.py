#!/usr/bin/env python3
"""Writes the chart's README from values.yaml: every value, its default and the comment above
it. With --check, fails (and writes nothing) when the README is not what values.yaml says.

The comments in values.yaml are the documentation: a comment block directly above a key
describes it; commented-out example lines (YAML) in the block are left out of the table.
"""
import json
import re
import sys
from pathlib import Path

CHART = Path(__file__).resolve().parent.parent / "charts" / "decision-gate"
KEY = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z][A-Za-z0-9_-]*):(?P<rest>.*)$")
EXAMPLE = re.compile(r"^(- |\{|[a-z][A-Za-z0-9_.-]*:( |$))")

HEAD = """# decision-gate Helm chart

A human approval gate in front of critical actions, carried out as Kubernetes Jobs with dry
run, rollback and a tamper-evident audit trail. See the project's README for what it does.

```sh
helm install decision-gate charts/decision-gate -n decision-gate-system --create-namespace \\
  --set image.repository=<your registry>/decision-gate   # built from the repository's Dockerfile
helm test decision-gate -n decision-gate-system
```

Kubernetes 1.36 or later. The CRDs are part of the release: `helm upgrade` upgrades them,
and `helm uninstall` keeps them (deleting a CRD deletes every object of its kind). Coming
from chart 0.1.0, which installed them from `crds/`, upgrade once with
`helm upgrade --take-ownership` (Helm 3.17 or later) so that the release adopts them.
Argo CD health checks are in `argocd/`, with how a Decision holds an Argo CD sync.

## Values

This table is generated from `values.yaml` by `hack/chart-readme.py`; `make test` checks it
is current.

| Value | Default | What it does |
|---|---|---|
"""


def content(lines, start):
    """The first line from `start` on that is neither blank nor a comment, or None."""
    for line in lines[start:]:
        if line.strip() and not line.strip().startswith("#"):
            return line
    return None


def indent(line):
    return len(line) - len(line.lstrip(" "))


def rows(lines):
    path, comments, out = [], [], []
    inside = None  # the indent of a key whose value is a block list being skipped
    for i, line in enumerate(lines):
        stripped = line.strip()
        if inside is not None:
            if stripped and not stripped.startswith("#") and (
                indent(line) > inside or (indent(line) == inside and stripped.startswith("- "))
            ):
                continue
            inside = None
        if stripped.startswith("#"):
            comments.append(stripped.lstrip("#").strip())
            continue
        if not stripped:
            comments = []
            continue
        m = KEY.match(line)
        if not m:
            continue
        depth = indent(line) // 2
        path = path[:depth] + [m.group("key")]
        rest = m.group("rest").split(" #")[0].strip()
        prose = [c for c in comments if c and not EXAMPLE.match(c)]
        comments = []
        if not rest:
            following = content(lines, i + 1)
            if following is not None and following.strip().startswith("- "):
                items = []
                for item in lines[i + 1:]:
                    if item.strip().startswith("#") or not item.strip():
                        continue
                    if indent(item) < indent(line) or (
                        indent(item) == indent(line) and not item.strip().startswith("- ")
                    ):
                        break
                    items.append(item.strip())
                rest = " ".join(items)
                inside = indent(line)
            elif following is not None and KEY.match(following) and indent(following) > indent(line):
                if prose:
                    out.append((".".join(path), "", " ".join(prose)))
                continue
            else:
                rest = "~"
        out.append((".".join(path), rest, " ".join(prose)))
    return out


def render():
    lines = (CHART / "values.yaml").read_text().splitlines()
    def cell(text):
        return text.replace("|", "\\|")

    table = "".join(
        "| `%s` | %s | %s |\n" % (key, "`%s`" % cell(default) if default else "", cell(text))
        for key, default, text in rows(lines)
    )
    return HEAD + table


def main():
    readme = CHART / "README.md"
    want = render()
    if "--check" in sys.argv:
        have = readme.read_text() if readme.exists() else ""
        if have != want:
            sys.exit(f"{readme} is not what values.yaml says; run hack/chart-readme.py")
        return
    readme.write_text(want)


if __name__ == "__main__":
    main()
