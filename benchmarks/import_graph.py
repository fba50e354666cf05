"""The package's import graph by layer: edges between layers, upward edges, cycles.

Reads every module under ``ROOT/facemark`` with ``ast`` (imports at module level and inside
functions alike, as tests/test_architecture.py does), puts each module in its layer (the
numbered "Layers" list of facemark/__init__.py's docstring, read from ``--layers-from``),
counts the module-to-module edges between each pair of layers, the edges that run up a layer
and the import cycles (groups of modules that import each other), prints them and draws the
layers as boxes with the edge counts on the arrows between them.

    python benchmarks/import_graph.py                    # docs/img/import_graph.png
    git archive COMMIT facemark | tar -x -C /tmp/old
    python benchmarks/import_graph.py --root /tmp/old --out /tmp/old.png   # an older tree
"""
from __future__ import annotations

import argparse
import ast
import re
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------------------
# Layers
# ---------------------------------------------------------------------------------------
def read_layers(init_file: Path, parts: set[str]) -> list[list[str]]:
    """The layers, lowest first, each a list of top-level parts (``data``, ``__main__``).

    Args:
        init_file: a facemark/__init__.py whose docstring has the numbered "Layers" list.
        parts: the names of the package's top-level modules and subpackages; the other
            double-backquoted words of an item (``Face``, ``facemark.load``) are not parts.
    """
    doc = ast.get_docstring(ast.parse(init_file.read_text(encoding="utf-8"))) or ""
    items = re.split(r"\n(?=\d+\. )", doc.split("Layers:", 1)[1].split("\n\n", 2)[1])
    return [[w for w in re.findall(r"``([\w.]+)``", item) if w in parts] for item in items]


def top_level_parts(package: Path) -> set[str]:
    """Names of the modules and subpackages directly under the package folder."""
    return {p.stem for p in package.glob("*.py") if p.stem != "__init__"} | \
        {p.name for p in package.iterdir() if (p / "__init__.py").is_file()}


def layer_of(module: str, layers: list[list[str]]) -> int | None:
    """0-based layer of a dotted module name; None for the package root ``facemark``."""
    parts = module.split(".")
    if len(parts) < 2:
        return None
    for i, names in enumerate(layers):
        if parts[1] in names:
            return i
    raise ValueError(f"{module} is in no layer of the docstring's list")


# ---------------------------------------------------------------------------------------
# The module graph
# ---------------------------------------------------------------------------------------
def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(module: str, tree: ast.AST, is_package: bool, modules: set[str]) -> set[str]:
    """The facemark modules one module imports (anywhere in it), resolved to existing modules."""
    package = module if is_package else module.rsplit(".", 1)[0]
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                kept = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(kept + ([base] if base else []))
            names += [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                      for a in node.names]
    found = set()
    for name in names:
        if name != "facemark" and not name.startswith("facemark."):
            continue
        while name not in modules and "." in name:
            name = name.rsplit(".", 1)[0]
        if name in modules and name != module:
            found.add(name)
    return found


def module_graph(root: Path) -> dict[str, set[str]]:
    """module -> the facemark modules it imports, for every .py under ``root/facemark``."""
    paths = {module_name(p, root): p for p in sorted((root / "facemark").rglob("*.py"))}
    graph = {}
    for module, path in paths.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        graph[module] = imported_modules(module, tree, path.name == "__init__.py", set(paths))
    return graph


def cycles(graph: dict[str, set[str]]) -> list[tuple[str, ...]]:
    """Strongly connected groups of more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(tuple(sorted(group)))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def layer_edges(graph: dict[str, set[str]], layers: list[list[str]]) -> Counter:
    """(importer's layer, imported layer) -> number of module-to-module edges (0-based
    layers; the package root is left out)."""
    edges = Counter()
    for module, targets in graph.items():
        for target in targets:
            a, b = layer_of(module, layers), layer_of(target, layers)
            if a is not None and b is not None:
                edges[a, b] += 1
    return edges


# ---------------------------------------------------------------------------------------
# Report and picture
# ---------------------------------------------------------------------------------------
def report(graph, layers, edges: Counter, found_cycles) -> str:
    names = [" + ".join(ls) for ls in layers]
    counts = Counter(layer_of(m, layers) for m in graph)
    upward = sorted((m, t) for m, ts in graph.items() for t in ts
                    if None not in (layer_of(m, layers), layer_of(t, layers))
                    and layer_of(t, layers) > layer_of(m, layers))
    lines = [f"{len(graph)} modules, {sum(len(t) for t in graph.values())} import edges "
             f"between facemark modules"]
    for i, name in enumerate(names):
        out = ", ".join(f"{names[b]} {n}" for (a, b), n in sorted(edges.items())
                        if a == i and b != i)
        plural = "module" if counts[i] == 1 else "modules"
        lines.append(f"  {i + 1}. {name}: {counts[i]} {plural}, {edges[i, i]} edges inside; "
                     f"imports {out or 'nothing below'}")
    lines.append(f"upward edges: {len(upward)}")
    lines += [f"  {m} -> {t}" for m, t in upward]
    lines.append(f"cycles: {len(found_cycles)}")
    lines += [f"  {len(c)} modules: {', '.join(c)}" for c in found_cycles]
    return "\n".join(lines)


def draw(layers, counts: Counter, edges: Counter, n_upward: int, found_cycles, out: Path) -> None:
    """Layers as a column of boxes (lowest at the bottom); an arc per pair of layers with
    edges, labelled with their number: downward on the right, upward (red) on the left.
    Arcs leave a box from the lower half of its side and arrive at the upper half."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyBboxPatch

    step, width, height = 1.6, 4.4, 0.9
    n = len(layers)
    fig, ax = plt.subplots(figsize=(10, 1.25 * n + 1.2))
    for i, names in enumerate(layers):
        y = i * step
        ax.add_patch(FancyBboxPatch((-width / 2, y - height / 2), width, height,
                                    boxstyle="round,pad=0.05", fc="#e8eef7", ec="#34495e"))
        ax.text(0, y + 0.12, f"{i + 1}. {' + '.join(names)}", ha="center", va="center",
                fontsize=11, weight="bold")
        plural = "module" if counts[i] == 1 else "modules"
        ax.text(0, y - 0.22, f"{counts[i]} {plural}, {edges[i, i]} edges inside", ha="center",
                va="center", fontsize=8.5, color="#555555")

    def port(layer: int, other: int, leaving: bool) -> float:
        """y where an arc between ``layer`` and ``other`` meets ``layer``'s box."""
        offset = 0.06 + 0.34 * (other / max(1, n - 1))
        return layer * step + (-offset if leaving else offset)

    for (a, b), count in sorted(edges.items()):
        if a == b:
            continue
        span, down = abs(a - b), b < a
        side = width / 2 if down else -width / 2
        rad = -(0.12 + 0.1 * span) if down else (0.12 + 0.1 * span)
        y1, y2 = port(a, b, leaving=True), port(b, a, leaving=False)
        colour = "#2c7fb8" if down else "#d7301f"
        ax.annotate("", xy=(side, y2), xytext=(side, y1),
                    arrowprops=dict(arrowstyle="-|>", color=colour, lw=0.8 + 0.25 * count ** 0.5,
                                    connectionstyle=f"arc3,rad={rad}", shrinkA=0, shrinkB=0))
        bulge = 0.5 * rad * (y2 - y1)          # the arc's midpoint, off the straight line
        ax.text(side + bulge, (y1 + y2) / 2, str(count), ha="center", va="center", fontsize=8,
                color=colour, bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none"))
    total = sum(c for (a, b), c in edges.items() if a != b)
    ax.set_title(f"facemark imports between layers: {total} downward edges, {n_upward} upward, "
                 f"{len(found_cycles)} cycle{'s' if len(found_cycles) != 1 else ''}",
                 fontsize=11)
    reach = 0.5 * (0.12 + 0.1 * (n - 1)) * (n - 1) * step     # the widest arc's bulge
    left = reach if n_upward else 0.3
    ax.set_xlim(-width / 2 - left - 0.3, width / 2 + reach + 0.5)
    ax.set_ylim(-step / 2 - 0.2, (n - 1) * step + step / 2)
    ax.set_aspect("equal")
    ax.axis("off")
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110, bbox_inches="tight")
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=REPO,
                        help="folder holding the facemark package (default: this checkout)")
    parser.add_argument("--layers-from", type=Path, default=REPO / "facemark" / "__init__.py",
                        help="the __init__.py whose docstring lists the layers")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "img" / "import_graph.png")
    args = parser.parse_args(argv)

    layers = read_layers(args.layers_from, top_level_parts(REPO / "facemark") |
                         top_level_parts(args.root / "facemark"))
    graph = module_graph(args.root)
    edges = layer_edges(graph, layers)
    found = cycles(graph)
    counts = Counter(layer_of(m, layers) for m in graph)
    text = report(graph, layers, edges, found)
    print(text)
    n_upward = sum(n for (a, b), n in edges.items() if b > a)
    draw(layers, counts, edges, n_upward, found, args.out)
    print(f"picture: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
