"""A command-line splitter with the rules of CommandLineToArgvW / the Microsoft C runtime.

Written from the documented rules (not from the product's quoting code) so the tests can check
that the product's commandLine splits back into the typed values:
- whitespace outside quotes separates arguments;
- 2n backslashes + '"' -> n backslashes and the quote toggles quoting;
- 2n+1 backslashes + '"' -> n backslashes and a literal '"';
- backslashes not followed by '"' are literal;
- inside quotes, '""' is a literal '"' (the C runtime's rule since 2008).
"""

from __future__ import annotations


def split_windows_command_line(line: str) -> list[str]:
    args: list[str] = []
    current: list[str] = []
    in_argument = False
    in_quotes = False
    i = 0
    while i < len(line):
        char = line[i]
        if char in " \t" and not in_quotes:
            if in_argument:
                args.append("".join(current))
                current, in_argument = [], False
            i += 1
            continue
        in_argument = True
        if char == "\\":
            run = len(line[i:]) - len(line[i:].lstrip("\\"))
            i += run
            if i < len(line) and line[i] == '"':
                current.append("\\" * (run // 2))
                if run % 2:
                    current.append('"')
                    i += 1
            else:
                current.append("\\" * run)
            continue
        if char == '"':
            if in_quotes and line[i + 1 : i + 2] == '"':
                current.append('"')
                i += 2
                continue
            in_quotes = not in_quotes
            i += 1
            continue
        current.append(char)
        i += 1
    if in_argument:
        args.append("".join(current))
    return args
