#!/usr/bin/env python3
"""Check the man pages against the binary: both render without warnings,
every command of `wmproxy --help`, every flag of `wmproxy COMMAND --help`
and every config key of `wmproxy schema-keys` (the schema's own tables,
whatever sections other features add) is documented.
Usage: check_docs.py WMPROXY_BIN [MAN_DIR]; exit 0 clean, 1 with a list."""

import os
import re
import subprocess
import sys


def run(*args):
    r = subprocess.run(list(args), capture_output=True, text=True, timeout=60,
                       env={**os.environ, "MANWIDTH": "200", "LC_ALL": "C.UTF-8"})
    return r.returncode, r.stdout, r.stderr


def commands(binary):
    _, out, err = run(binary, "--help")
    text = out + err
    block = text.split("commands:", 1)[1] if "commands:" in text else ""
    return [m.group(1) for m in re.finditer(r"^  ([a-z][a-z0-9-]*)\s", block, re.M)]


def flags(binary, cmd):
    _, out, err = run(binary, cmd, "--help")
    return sorted(set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*|-[a-zA-Z])(?![\w-])", out + err)))


def main():
    binary = sys.argv[1]
    mandir = sys.argv[2] if len(sys.argv) > 2 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "..", "man")
    page1 = os.path.join(mandir, "wmproxy.1")
    page5 = os.path.join(mandir, "wmproxy.conf.5")
    bad = []
    rendered = {}
    for p in (page1, page5):
        code, out, err = run("man", "--warnings", "-l", p)
        if code != 0 or err.strip():
            bad.append("%s: man --warnings: %s" % (p, err.strip() or "exit %d" % code))
        rendered[p] = out
    # wmproxy(1): a subsection per command, every flag of its --help
    sections = re.split(r"^   (\S+)\n", rendered[page1], flags=re.M)
    per_cmd = {sections[i]: sections[i + 1] for i in range(1, len(sections) - 1, 2)}
    for cmd in commands(binary):
        if cmd not in per_cmd:
            bad.append("wmproxy.1: command %s has no subsection" % cmd)
            continue
        for f in flags(binary, cmd):
            if not re.search(r"(?<![\w-])%s(?![\w-])" % re.escape(f), per_cmd[cmd]):
                bad.append("wmproxy.1: %s %s is not documented" % (cmd, f))
    # wmproxy.conf(5): every table as [path], every key as an entry
    src5 = open(page5).read()
    entries = set(re.findall(r"^\.TP\n\.BR? (\S+)", src5, re.M))
    code, out, err = run(binary, "schema-keys")
    if code != 0 or not out.strip():
        bad.append("wmproxy schema-keys failed: %s" % err)
    for line in out.splitlines():
        path, kind = line.split("\t")[:2]
        leaf = path.rsplit(".", 1)[-1]
        if kind in ("section", "sections") and "[%s]" % path not in src5:
            bad.append("wmproxy.conf.5: section [%s] is not documented" % path)
        if leaf.replace("-", "\\-") not in entries:
            bad.append("wmproxy.conf.5: key %s (%s) has no entry" % (path, kind))
    for b in bad:
        print(b)
    print("check_docs: %s" % ("%d problem(s)" % len(bad) if bad else "ok"))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
