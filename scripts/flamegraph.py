#!/usr/bin/env python3
"""scripts/flamegraph.py: `perf script` output (on stdin) as a flame graph SVG.

  perf script -i perf.data | scripts/flamegraph.py --title "sink" > flame.svg
  scripts/flamegraph.py --folded < perf.txt > stacks.folded   (folded stacks only)

Each sample's stack, root first, becomes a bar whose width is its share of
the samples; stacks are merged where they share their start (as Brendan
Gregg's flamegraph.pl and inferno do; neither is packaged here). Frames are
named by function, with Rust's hash suffixes and argument lists dropped;
the process's thread name is the root. Plain Python, no packages.
"""

import html
import re
import sys

WIDTH = 1200
ROW = 16
FONT = 11
MIN_WIDTH_PX = 0.3


def clean(symbol):
    symbol = re.sub(r"\+0x[0-9a-f]+$", "", symbol)
    symbol = re.sub(r"::h[0-9a-f]{16}$", "", symbol)
    symbol = re.sub(r"\(.*\)$", "", symbol)  # C++ argument lists
    return symbol or "[unknown]"


def fold(lines):
    """Folded stacks: {"thread;root;...;leaf": samples}."""
    stacks = {}
    header, frames = None, []

    def flush():
        if header is not None:
            key = ";".join([header] + [clean(f) for f in reversed(frames)])
            stacks[key] = stacks.get(key, 0) + 1

    for line in lines:
        line = line.rstrip("\n")
        if not line.strip():
            flush()
            header, frames = None, []
        elif not line[0].isspace():
            flush()
            # "comm pid/tid time: period event:": comm may hold spaces.
            m = re.match(r"^(.*?)\s+\d+(/\d+)?\s", line)
            header, frames = (m.group(1) if m else line.split()[0]).replace(";", ":"), []
        else:
            parts = line.strip().split(None, 1)
            if len(parts) == 2:
                symbol = re.sub(r"\s+\([^()]*\)$", "", parts[1])
                frames.append(symbol.replace(";", ":"))
    flush()
    return stacks


def tree(stacks):
    root = {"name": "all", "value": 0, "children": {}}
    for stack, n in stacks.items():
        root["value"] += n
        node = root
        for name in stack.split(";"):
            node = node["children"].setdefault(name, {"name": name, "value": 0, "children": {}})
            node["value"] += n
    return root


def color(name):
    h = 0
    for c in name:
        h = (h * 31 + ord(c)) & 0xFFFFFFFF
    if "wasm" in name or "cranelift" in name or "component" in name:
        base = (120, 190, 90)  # green: the WASM side
    elif "postgres" in name or "tokio_postgres" in name:
        base = (90, 150, 220)  # blue: PostgreSQL client
    elif "rdk" in name or "rdkafka" in name:
        base = (200, 130, 200)  # purple: librdkafka
    else:
        base = (230, 120, 50)  # orange: everything else
    jitter = h % 40
    return "rgb({},{},{})".format(*(min(255, c + jitter) for c in base))


def svg(root, title):
    total = max(root["value"], 1)
    scale = (WIDTH - 20) / total
    rects = []
    depth_max = 0

    def walk(node, x, depth):
        nonlocal depth_max
        w = node["value"] * scale
        if w < MIN_WIDTH_PX:
            return
        depth_max = max(depth_max, depth)
        rects.append((x, depth, w, node["name"], node["value"]))
        cx = x
        for child in sorted(node["children"].values(), key=lambda c: c["name"]):
            walk(child, cx, depth + 1)
            cx += child["value"] * scale

    walk(root, 10, 0)
    height = (depth_max + 1) * ROW + 60
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" font-family="monospace" font-size="{FONT}">',
        f'<rect width="100%" height="100%" fill="#fdfdf6"/>',
        f'<text x="{WIDTH / 2}" y="20" text-anchor="middle" font-size="15">{html.escape(title)}</text>',
        f'<text x="10" y="40" font-size="10">{total} samples; width: share of samples; '
        "root at the bottom; hover a bar for its name and share</text>",
    ]
    for x, depth, w, name, value in rects:
        y = height - 10 - (depth + 1) * ROW
        share = 100.0 * value / total
        label = f"{name} ({value} samples, {share:.2f}%)"
        out.append(
            f'<g><title>{html.escape(label)}</title>'
            f'<rect x="{x:.2f}" y="{y}" width="{w:.2f}" height="{ROW - 1}" fill="{color(name)}" rx="2"/>'
        )
        chars = int(w / (FONT * 0.6))
        if chars >= 3:
            text = name if len(name) <= chars else name[: max(chars - 2, 1)] + ".."
            out.append(f'<text x="{x + 3:.2f}" y="{y + ROW - 4}">{html.escape(text)}</text>')
        out.append("</g>")
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main(argv):
    if "-h" in argv or "--help" in argv:
        print(__doc__.strip())
        return 0
    title = "flame graph"
    if "--title" in argv:
        i = argv.index("--title")
        if i + 1 >= len(argv):
            print("flamegraph.py: --title needs a value", file=sys.stderr)
            return 2
        title = argv[i + 1]
    stacks = fold(sys.stdin)
    if not stacks:
        print("flamegraph.py: no samples on stdin (expected `perf script` output)", file=sys.stderr)
        return 1
    if "--folded" in argv:
        for stack, n in sorted(stacks.items()):
            print(f"{stack} {n}")
    else:
        sys.stdout.write(svg(tree(stacks), title))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
