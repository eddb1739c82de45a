#!/usr/bin/env python3
"""Checks the shape of the source tree: no import cycles between modules, no oversized files.

Usage: python3 scripts/check-layout.py [SRC_DIR]   (default: src next to this script's parent)

A module is a file: src/a/mod.rs is `a`, src/a/b.rs is `a::b`. Module A imports module B when
A's code (not its #[cfg(test)] modules, not its comments or doc links) names a path into B:
`use crate::b::X`, an inline `crate::b::X` in an expression, `super::X`, `self::x::Y`, grouped
`use crate::{a, b::c}`, and a path that starts at a child module (`use child::X`). Declaring a child (`mod b;`) is not an import. A cycle is a set of
modules that import each other, directly or through others; each one found is printed with the
lines that make it, and the exit code is 1. So is an import of a later stage (STAGES below):
the tree reads as the data flow only while imports point back along it.

File size: a file's lines before its `#[cfg(test)] mod tests` may number at most MAX_LINES,
except the files in TABLE_FILES (data tables that read best whole).

The script has no dependencies beyond Python 3's standard library so that anyone can run it.
"""

import os
import re
import sys

MAX_LINES = 700
# The stages in the order data flows through them: a module may import its own stage and the
# stages before it, never one after it. `sim` stands beside the daemon and may use `probe`.
STAGES = ["config", "schedule", "probe", "classify", "health", "metrics", "history", "run",
          "server", "daemon", "sim", "cli"]
# Files that are tables: the simulator's canned responses.
TABLE_FILES = {"sim/responses.rs"}

PATH_RE = re.compile(r"\b(crate|super|self)::")
# A path that starts at a child module, as `use child::Item` or `child::function()` in mod.rs.
CHILD_RE = re.compile(r"(?<![\w:])([a-z_][a-z0-9_]*)::")


def module_of(src, path):
    rel = os.path.relpath(path, src).replace(os.sep, "/")
    parts = rel[:-3].split("/")
    if parts[-1] == "mod":
        parts = parts[:-1]
    if parts in (["lib"], ["main"]):
        return ()
    return tuple(parts)


def strip_tests(lines):
    """The (line number, line) pairs left once every `#[cfg(test)]` item is dropped."""
    out = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.strip() == "#[cfg(test)]":
            indent = len(line) - len(line.lstrip())
            j = i + 1
            while j < len(lines) and lines[j].strip().startswith("#["):
                j += 1
            item = lines[j] if j < len(lines) else ""
            if item.rstrip().endswith("{"):
                close = " " * indent + "}"
                k = j + 1
                while k < len(lines) and lines[k].rstrip() != close:
                    k += 1
                i = k + 1
            else:
                i = j + 1
            continue
        out.append((i + 1, line))
        i += 1
    return out


def code_only(line):
    """The line without its comment (a `//` that does not follow `:` as in a URL)."""
    stripped = line.lstrip()
    if stripped.startswith("//"):
        return ""
    return re.sub(r"(?<!:)//.*$", "", line)


def group_items(text, start):
    """Splits `{a, b::{c, d}}` starting at text[start] == '{' into its top-level items."""
    depth = 0
    items, current = [], ""
    for i in range(start, len(text)):
        ch = text[i]
        if ch == "{":
            depth += 1
            if depth == 1:
                continue
        elif ch == "}":
            depth -= 1
            if depth == 0:
                items.append(current)
                return items
        if depth == 1 and ch == ",":
            items.append(current)
            current = ""
        else:
            current += ch
    return items


def paths_in(text):
    """Every path that starts with crate::, super:: or self::: (offset, segments)."""
    found = []
    for m in PATH_RE.finditer(text):
        root = m.group(1)
        at = m.start()
        # `use super::*` names the parent too.
        rest = text[m.end():]
        if rest.startswith("{"):
            for item in group_items(text, m.end()):
                segs = [s.strip() for s in re.split(r"::", item.strip()) if s.strip()]
                if segs:
                    found.append((at, [root] + [re.split(r"[\s{;,(]", segs[0])[0]] + segs[1:2]))
            continue
        segs = re.match(r"((?:[A-Za-z_][A-Za-z0-9_]*|\*)(?:::(?:[A-Za-z_][A-Za-z0-9_]*|\*))*)", rest)
        found.append((at, [root] + (segs.group(1).split("::") if segs else [])))
    return found


def resolve(module, segs, modules):
    """The module a path lands in: the longest prefix that names a module."""
    root, rest = segs[0], segs[1:]
    if root == "crate":
        base = ()
    elif root == "self":
        base = module
    else:  # super
        base = module[:-1]
        while rest and rest[0] == "super":
            base = base[:-1]
            rest = rest[1:]
    target = base
    for seg in rest:
        if base + (seg,) in modules or target + (seg,) in modules:
            target = target + (seg,)
        else:
            break
    return target


def find_cycles(graph):
    """Strongly connected components with more than one module (Tarjan's algorithm)."""
    index, low, on_stack, stack, out = {}, {}, set(), [], []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def main(argv):
    here = os.path.dirname(os.path.abspath(__file__))
    src = argv[1] if len(argv) > 1 else os.path.join(os.path.dirname(here), "src")
    files = {}
    for dirpath, _, names in os.walk(src):
        for name in names:
            if name.endswith(".rs"):
                path = os.path.join(dirpath, name)
                files[module_of(src, path)] = path
    modules = set(files)
    graph, why = {}, {}
    problems = 0
    for module, path in sorted(files.items()):
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
        body = strip_tests(lines)
        rel = os.path.relpath(path, src).replace(os.sep, "/")
        if len(body) > MAX_LINES and rel not in TABLE_FILES:
            print(f"{rel}: {len(body)} lines without its tests, over {MAX_LINES}: split it along its jobs")
            problems += 1
        if module == ():
            continue
        text = "\n".join(code_only(l) for _, l in body)
        found = paths_in(text)
        for m in CHILD_RE.finditer(text):
            if module + (m.group(1),) in modules:
                found.append((m.start(), ["self", m.group(1)]))
        for at, segs in found:
            target = resolve(module, segs, modules)
            if target == module or target == ():
                continue
            graph.setdefault(module, set()).add(target)
            line = body[text.count("\n", 0, at)][0]
            why.setdefault((module, target), f"{rel}:{line}")
    for (a, b), where in sorted(why.items()):
        if a[0] in STAGES and b[0] in STAGES and STAGES.index(b[0]) > STAGES.index(a[0]):
            print(f"{where}: {'::'.join(a)} imports {'::'.join(b)}, a later stage")
            problems += 1
    for comp in find_cycles(graph):
        names = ", ".join("::".join(m) for m in comp)
        print(f"import cycle between {names}:")
        members = set(comp)
        for a in comp:
            for b in sorted(graph.get(a, ())):
                if b in members:
                    print(f"  {'::'.join(a)} -> {'::'.join(b)} ({why[(a, b)]})")
        problems += 1
    if problems:
        print(f"check-layout: {problems} problem(s)")
        return 1
    print(f"check-layout: {len(files)} files, no import cycle, no later stage imported, none over {MAX_LINES} lines")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
