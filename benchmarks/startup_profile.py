"""Where one `ibkr-agent` start-up spends its instructions, module by module (valgrind's callgrind).

    uv run python benchmarks/startup_profile.py accounts list --json
    uv run python benchmarks/startup_profile.py --top 40 --under import:ibkr_gateway_cpapi health --json

The command runs once to warm a fresh state directory, then once under `valgrind --tool=callgrind
--dump-before=os_getppid`. The child calls `os.getppid()` before and after each module it loads, each
pydantic model class it defines and schema it builds, each dataclass and each regular expression it
compiles, so callgrind writes what ran between two marks to a file of its own. Prints the marks by
their own instructions (what ran under them but not under a mark inside) and by everything under them;
`--under NAME` prints the tree below one mark instead. The marks add about 2% to the total, and
`<exit>` also holds writing them out; pydantic's import is under `<setup>`, as the marks need it.
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

CHILD = r"""
import functools, os, sys
import _frozen_importlib as bootstrap
events, events_path = [], sys.argv[1]

def mark(kind, name):
    events.append((kind, name))
    os.getppid()

def marked(label, fn):
    @functools.wraps(fn)
    def run(*args, **kwargs):
        name = label(*args, **kwargs)
        mark("enter", name)
        try:
            return fn(*args, **kwargs)
        finally:
            mark("exit", name)
    return run

bootstrap._load_unlocked = marked(lambda spec: "import:" + spec.name, bootstrap._load_unlocked)
import atexit, dataclasses, re
import pydantic._internal._model_construction as construction

def _write():
    mark("phase", "exit")
    with open(events_path, "w", encoding="utf-8") as out:
        for kind, name in events:
            out.write(kind + " " + "_".join(name.split()) + "\n")

atexit.register(_write)
meta = construction.ModelMetaclass
meta.__new__ = marked(lambda mcs, name, bases, ns, **kw: "class:" + ns.get("__module__", "") + "." + name, meta.__new__)
construction.complete_model_class = marked(
    lambda cls, *a, **kw: "schema:" + cls.__module__ + "." + cls.__name__, construction.complete_model_class
)
dataclasses._process_class = marked(
    lambda cls, *a, **kw: "dataclass:" + cls.__module__ + "." + cls.__qualname__, dataclasses._process_class
)
re._compile = marked(lambda pattern, *a, **kw: "re:" + str(pattern)[:40], re._compile)
sys.argv = ["ibkr-agent", *sys.argv[2:]]
mark("phase", "run")
from ibkr_gateway_cli.fast import main
main()
"""


@dataclass
class Node:
    name: str
    own: int = 0
    total: int = 0
    children: list[Node] = field(default_factory=list["Node"])


def _summary(path: Path) -> int:
    with path.open(encoding="utf-8") as dump:
        for line in dump:
            if line.startswith("summary:"):
                return int(line.split()[1])
    raise SystemExit(f"no summary in {path}")


def _tree(directory: Path) -> Node:
    """The marks as a tree; each node's `own` is what ran under it and under no mark inside it."""
    dumps = sorted(directory.glob("callgrind.out.*"), key=lambda p: int(p.suffix[1:]))
    counts = [_summary(p) for p in dumps] + [_summary(directory / "callgrind.out")]
    events = [
        line.rstrip("\n").split(" ", 1) for line in (directory / "events").read_text(encoding="utf-8").splitlines()
    ]
    if len(counts) != len(events) + 1:
        raise SystemExit(f"{len(counts)} dumps for {len(events)} marks: another function named os_getppid ran?")
    root = Node("<setup>")
    top = Node("<all>", children=[root])
    stack = [top, root]
    root.own += counts[0]  # before the first mark
    for (kind, name), count in zip(events, counts[1:], strict=True):  # what ran after each mark
        if kind == "enter":
            node = Node(name)
            stack[-1].children.append(node)
            stack.append(node)
        elif kind == "exit":
            stack.pop()
        else:
            node = Node(f"<{name}>")
            top.children.append(node)
            stack = [top, node]
        stack[-1].own += count
    _sum(top)
    return top


def _sum(node: Node) -> int:
    node.total = node.own + sum(_sum(child) for child in node.children)
    return node.total


def _walk(node: Node) -> list[Node]:
    return [node, *(n for child in node.children for n in _walk(child))]


def _print_tree(node: Node, depth: int, least: float, indent: int = 0) -> None:
    print(f"{'  ' * indent}{node.total / 1e6:8.2f} M  (own {node.own / 1e6:6.2f})  {node.name}")
    if depth > 0:
        for child in node.children:
            if child.total / 1e6 >= least:
                _print_tree(child, depth - 1, least, indent + 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--top", type=int, default=30, help="marks listed in each table")
    parser.add_argument("--under", help="print the tree below this mark (e.g. import:ibkr_gateway_core.config)")
    parser.add_argument("--depth", type=int, default=3, help="levels of the --under tree")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the ibkr-agent command line")
    args = parser.parse_args()
    if not args.command:
        parser.error("give the command line to profile, e.g. accounts list --json")
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed")
    with tempfile.TemporaryDirectory(prefix="ibkr-agent-profile-") as scratch:
        work = Path(scratch)
        env = {**os.environ, "IBKR_AGENT_STATE_DIR": str(work / "state")}
        env.pop("PYTHONDONTWRITEBYTECODE", None)  # measure with the .pyc files a user has
        env.pop("IBKR_AGENT_CONFIG", None)
        subprocess.run([sys.executable, "-c", CHILD, str(work / "warm"), *args.command], env=env, check=True,
                       stdout=subprocess.DEVNULL)  # fmt: skip
        callgrind = [
            "valgrind",
            "--tool=callgrind",
            "--dump-before=os_getppid",
            f"--callgrind-out-file={work}/callgrind.out",
        ]
        done = subprocess.run([*callgrind, sys.executable, "-c", CHILD, str(work / "events"), *args.command],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)  # fmt: skip
        if done.returncode != 0:
            raise SystemExit(f"the profiled run failed ({done.returncode}): {done.stderr.decode()[-1000:]}")
        top = _tree(work)
    print(f"{' '.join(args.command)}: {top.total / 1e6:.1f} M instructions (marks included)")
    if args.under:
        found = next((n for n in _walk(top) if n.name == args.under), None)
        if found is None:
            raise SystemExit(f"no mark named {args.under!r}")
        _print_tree(found, args.depth, least=0.5)
        return
    marks = _walk(top)[1:]
    kinds: collections.Counter[str] = collections.Counter()
    for node in marks:
        kinds[node.name.split(":", 1)[0]] += node.own
    print("\nown instructions by kind of mark:")
    for kind, value in kinds.most_common():
        print(f"{value / 1e6:8.2f} M  {kind}")
    for title, key in (("own", lambda n: n.own), ("everything under it", lambda n: n.total)):
        print(f"\nthe {args.top} costliest marks, by {title}:")
        for node in sorted(marks, key=key, reverse=True)[: args.top]:
            print(f"{key(node) / 1e6:8.2f} M  {node.name}")


if __name__ == "__main__":
    main()
