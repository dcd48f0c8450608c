"""Summarise py-spy collapsed stacks: where the samples are, by own time and by inclusive time.

python -m loadtests.spysummary FILE.txt [--top 25] [--match app/]
"""

from __future__ import annotations

import argparse
import collections
import re


def frames(stack: str) -> list[str]:
    out = []
    for f in stack.split(";"):
        m = re.match(r"^(.*?) \((.*?)(?::\d+)?\)$", f)
        if m:
            path = m.group(2)
            for cut in ("site-packages/", "/app/", "/loadtests/"):
                if cut in path:
                    path = (
                        path.split(cut, 1)[1]
                        if cut == "site-packages/"
                        else cut[1:] + path.split(cut, 1)[1]
                    )
            out.append(f"{m.group(1)} ({path})")
        else:
            out.append(f)
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("file")
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--match", default="", help="inclusive table: only frames containing this")
    a = p.parse_args()
    own: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    total = 0
    with open(a.file, encoding="utf-8", errors="replace") as fh:
        lines = fh.readlines()
    for line in lines:
        stack, _, n = line.rstrip("\n").rpartition(" ")
        if not stack:
            continue
        count = int(n)
        total += count
        fs = frames(stack)
        own[fs[-1]] += count
        for f in set(fs):
            incl[f] += count
    print(f"{total} samples")
    print("-- own time --")
    for f, k in own.most_common(a.top):
        print(f"{100 * k / total:5.1f}%  {f}")
    print("-- inclusive --")
    shown = 0
    for f, k in incl.most_common():
        if a.match and a.match not in f:
            continue
        print(f"{100 * k / total:5.1f}%  {f}")
        shown += 1
        if shown >= a.top:
            break


if __name__ == "__main__":
    main()
