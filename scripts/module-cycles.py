#!/usr/bin/env python3
"""Lists import cycles between the top-level modules of each crate in the workspace.

A crate's top-level modules are the files and directories its root (`lib.rs` or `main.rs`)
declares with `mod`. Module A depends on module B when a file under A names `crate::B` (in a
path or in a `use crate::{...}` group). The crate root itself is not a node: it holds the
crate's vocabulary (its error type, the struct the modules extend with `impl` blocks) and its
re-exports. Comments are ignored. Exit status 1 when any crate has a cycle.

Usage: scripts/module-cycles.py [CRATE_SRC_DIR...]   (default: every crate of the workspace)
"""
import os
import re
import sys


def modules_of(src):
    root = next((os.path.join(src, f) for f in ("lib.rs", "main.rs") if os.path.exists(os.path.join(src, f))), None)
    if root is None:
        return set()
    text = open(root).read()
    return set(re.findall(r"^\s*(?:pub(?:\([a-z]+\))?\s+)?mod\s+([a-z_0-9]+)\s*;", text, re.M))


def uses(text):
    text = "\n".join(line for line in text.split("\n") if not line.strip().startswith("//"))
    found = set(re.findall(r"crate::([a-z_0-9]+)", text))
    for group in re.findall(r"crate::\{([^}]*)\}", text, re.S):
        for part in group.split(","):
            head = part.strip().split("::")[0].split(" ")[0].strip()
            if head:
                found.add(head)
    return found


def graph(src):
    mods = modules_of(src)
    edges = {m: set() for m in mods}
    for dirpath, _, files in os.walk(src):
        for f in files:
            if not f.endswith(".rs"):
                continue
            rel = os.path.relpath(os.path.join(dirpath, f), src)
            top = rel.split(os.sep)[0].removesuffix(".rs")
            if top not in mods:
                continue
            for m in uses(open(os.path.join(dirpath, f)).read()):
                if m in mods and m != top:
                    edges[top].add(m)
    return edges


def cycles(edges):
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]
    sys.setrecursionlimit(10000)

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def main():
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    dirs = sys.argv[1:] or [os.path.join(here, "src")] + sorted(
        os.path.join(here, "crates", c, "src") for c in os.listdir(os.path.join(here, "crates"))
    )
    bad = False
    for d in dirs:
        found = cycles(graph(d))
        name = os.path.relpath(d, here)
        if found:
            bad = True
            for c in found:
                print(f"{name}: import cycle between modules {', '.join(c)}")
        else:
            print(f"{name}: no import cycle between its {len(modules_of(d))} top-level modules")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
