#!/usr/bin/env python3
"""Fails when a dependency's license is not compatible with hybox's Apache-2.0 OR MIT.

An equivalent of `cargo deny check licenses` that needs nothing beyond cargo and Python: reads
`cargo metadata`, evaluates each SPDX expression (OR: any branch allowed; AND: every part
allowed) against the allow-list, and lists the offenders.
"""
import json
import re
import subprocess
import sys

ALLOWED = {
    "MIT", "MIT-0", "Apache-2.0", "Apache-2.0 WITH LLVM-exception", "BSD-2-Clause",
    "BSD-3-Clause", "ISC", "Zlib", "0BSD", "Unicode-3.0", "Unicode-DFS-2016", "CC0-1.0",
    "BSL-1.0", "Unlicense", "MPL-2.0", "CDLA-Permissive-2.0", "bzip2-1.0.6",
}


def tokens(expr):
    return re.findall(r"\(|\)|[A-Za-z0-9.+\-]+(?: WITH [A-Za-z0-9.+\-]+)?", expr.replace("/", " OR "))


def allowed(expr):
    toks = tokens(expr)
    pos = 0

    def parse_or():
        nonlocal pos
        ok = parse_and()
        while pos < len(toks) and toks[pos] == "OR":
            pos += 1
            ok = parse_and() or ok
        return ok

    def parse_and():
        nonlocal pos
        ok = parse_atom()
        while pos < len(toks) and toks[pos] == "AND":
            pos += 1
            ok = parse_atom() and ok
        return ok

    def parse_atom():
        nonlocal pos
        tok = toks[pos]
        pos += 1
        if tok == "(":
            ok = parse_or()
            pos += 1  # ")"
            return ok
        return tok in ALLOWED

    return parse_or()


def main():
    meta = json.loads(subprocess.check_output(
        ["cargo", "metadata", "--format-version", "1", "--locked"], text=True))
    ours = {p["id"] for p in meta["packages"] if p["source"] is None}
    bad = []
    for p in meta["packages"]:
        if p["id"] in ours:
            continue
        lic = p.get("license")
        if not lic or not allowed(lic):
            bad.append(f'{p["name"]} {p["version"]}: {lic or "no license field"}')
    if bad:
        print("dependencies with licenses outside the policy:", *bad, sep="\n  ")
        return 1
    print(f"{len(meta['packages']) - len(ours)} dependencies, all licenses allowed")
    return 0


if __name__ == "__main__":
    assert allowed("MIT OR Apache-2.0") and allowed("(MIT OR Apache-2.0) AND Unicode-3.0")
    assert not allowed("GPL-3.0") and not allowed("MIT AND GPL-2.0") and allowed("GPL-2.0 OR MIT")
    assert allowed("Apache-2.0 WITH LLVM-exception") and allowed("MIT/Apache-2.0")
    sys.exit(main())
