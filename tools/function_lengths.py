#!/usr/bin/env python3
"""Lists functions longer than a bound (HACKING.md: about 70 lines, tables excepted).

    tools/function_lengths.py [--max N] FILE...
    e.g. tools/function_lengths.py lib/*/*.cc nbd-server/*.cc tools/*.cc

A brace counter, not a parser: a function is a line at column 0 that ends with '{' (and is not
a namespace, class, struct, enum or a constant's initializer) up to its matching '}'. Functions
defined inside a class body are not seen. Exit 1 when any is over the bound.
"""
import re
import sys

SKIP = re.compile(r'(namespace|struct|class|enum|union|extern|static const|const|constexpr)\b')


def long_functions(path, bound):
    lines = open(path, encoding='utf-8').read().split('\n')
    i = 0
    while i < len(lines):
        line = lines[i]
        opens = (line and not line[0].isspace() and line.rstrip().endswith('{') and
                 not SKIP.match(line) and '(' in ''.join(lines[max(0, i - 3):i + 1]))
        if opens:
            depth, j = 0, i
            while j < len(lines):
                depth += lines[j].count('{') - lines[j].count('}')
                if depth == 0:
                    break
                j += 1
            if j - i + 1 > bound:
                yield i + 1, j - i + 1, line[:80]
            i = j
        i += 1


def main(argv):
    bound = 70
    if len(argv) > 2 and argv[1] == '--max':
        bound, argv = int(argv[2]), argv[2:]
    found = 0
    for path in argv[1:]:
        for line, length, head in long_functions(path, bound):
            print(f'{path}:{line}: {length} lines: {head}')
            found += 1
    return 1 if found else 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
