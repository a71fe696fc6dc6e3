#!/usr/bin/env python3
"""Lists what breaks the house limits in src/: files over 400 lines and functions over 60
(both counted without the `#[cfg(test)]` module). A heuristic for the house style (rustfmt-like
indentation, a function ends at the first `}` at its own indentation), not a parser.
Usage: scripts/long-code.py [DIR]   (default: src)"""
import pathlib
import re
import sys

FILE_LIMIT, FN_LIMIT = 400, 60
FN = re.compile(r'^(\s*)(pub(\([^)]*\))?\s+)?(const\s+)?(async\s+)?(unsafe\s+)?(extern "C"\s+)?fn\s+(\w+)')


def report(path):
    lines = path.read_text().split('\n')
    end = next((i for i, l in enumerate(lines) if l.startswith('#[cfg(test)]')), len(lines))
    if end > FILE_LIMIT:
        print(f'FILE {end:5d} {path}')
    for i in range(end):
        m = FN.match(lines[i])
        if not m or lines[i].rstrip().endswith((';', '}')):
            continue
        indent = m.group(1)
        j = i + 1
        while j < end and lines[j].rstrip() != indent + '}':
            j += 1
        if j - i + 1 > FN_LIMIT:
            print(f'FN   {j - i + 1:5d} {path}:{i + 1} {m.group(8)}')


for p in sorted(pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else 'src').rglob('*.rs')):
    report(p)
