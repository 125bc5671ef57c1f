#!/usr/bin/env python3
"""Run a toml-test decoder over the TOML 1.0 file list of the toml-test corpus.

Every listed valid/X.toml must decode (exit 0) to JSON that matches valid/X.json
semantically; every listed invalid/X.toml must be rejected with exit status 1 and a
"file:line:col: message" diagnostic. Crashes (signals, exit > 1) and timeouts fail.

Usage: run_corpus.py --decoder build/toml-decoder --corpus ../shared/toml-test/tests
Standard library only.
"""

import argparse
import calendar
import concurrent.futures
import json
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
FALLBACK_CORPORA = [
    "/work/shared/toml-test/tests",
    os.path.join(HERE, "..", "..", "..", "shared", "toml-test", "tests"),
    "../../shared/toml-test/tests",
]
LIST_NAME = "files-toml-1.0.0"
TIMEOUT_S = 5
SCALAR_TYPES = {"string", "integer", "float", "bool", "datetime", "datetime-local",
                "date-local", "time-local"}
ERR_RE = re.compile(r"^.*:\d+:\d+: \S")
DT_RE = re.compile(
    r"^(?:(\d{4})-(\d{2})-(\d{2}))?"
    r"(?:[Tt ]?(\d{2}):(\d{2})(?::(\d{2}))?(?:\.(\d+))?)?"
    r"([Zz]|[+-]\d{2}:\d{2})?$")


def find_corpus(given):
    for cand in [given] + FALLBACK_CORPORA:
        if cand and os.path.isfile(os.path.join(cand, LIST_NAME)):
            return cand
    return None


def is_tagged(v):
    return (isinstance(v, dict) and set(v) == {"type", "value"}
            and isinstance(v["value"], str) and v["type"] in SCALAR_TYPES)


def norm_float(s):
    t = s.lstrip("+")
    if t in ("nan", "-nan"):
        return "nan"
    if t in ("inf", "-inf"):
        return t
    return float(s.replace("_", ""))


def norm_datetime(kind, s):
    m = DT_RE.match(s)
    if not m:
        return ("unparsable", s)
    y, mo, d, hh, mi, ss, frac, off = m.groups()
    frac = (frac or "").rstrip("0")
    if kind == "datetime" and y and hh and off:
        secs = calendar.timegm((int(y), int(mo), int(d), int(hh), int(mi), int(ss or 0)))
        if off not in ("Z", "z"):
            sign = -1 if off[0] == "-" else 1
            secs -= sign * (int(off[1:3]) * 3600 + int(off[4:6]) * 60)
        return ("instant", secs, frac)
    return (kind, y, mo, d, hh, mi, ss or "00", frac, off)


def scalar_equal(a, b):
    if a["type"] != b["type"]:
        return False
    t, x, y = a["type"], a["value"], b["value"]
    try:
        if t == "integer":
            return int(x.replace("_", ""), 0) == int(y.replace("_", ""), 0)
        if t == "float":
            fx, fy = norm_float(x), norm_float(y)
            if isinstance(fx, str) or isinstance(fy, str):
                return fx == fy
            return fx == fy
        if t in ("datetime", "datetime-local", "date-local", "time-local"):
            return norm_datetime(t, x) == norm_datetime(t, y)
    except ValueError:
        return False
    return x == y


def diff(got, want, path="$"):
    """First difference between decoded and expected JSON, or None."""
    if is_tagged(want) or is_tagged(got):
        if not (is_tagged(want) and is_tagged(got)):
            return "%s: got %s, want %s" % (path, short(got), short(want))
        if not scalar_equal(got, want):
            return "%s: got %s, want %s" % (path, short(got), short(want))
        return None
    if isinstance(want, dict):
        if not isinstance(got, dict):
            return "%s: got %s, want a table" % (path, short(got))
        if set(got) != set(want):
            return "%s: keys differ: extra %s, missing %s" % (
                path, sorted(set(got) - set(want)), sorted(set(want) - set(got)))
        for k in want:
            d = diff(got[k], want[k], "%s.%s" % (path, json.dumps(k)))
            if d:
                return d
        return None
    if isinstance(want, list):
        if not isinstance(got, list):
            return "%s: got %s, want an array" % (path, short(got))
        if len(got) != len(want):
            return "%s: array length %d, want %d" % (path, len(got), len(want))
        for i, (g, w) in enumerate(zip(got, want)):
            d = diff(g, w, "%s[%d]" % (path, i))
            if d:
                return d
        return None
    return None if got == want else "%s: got %s, want %s" % (path, short(got), short(want))


def short(v):
    s = json.dumps(v, ensure_ascii=False)
    return s if len(s) <= 80 else s[:77] + "..."


def run_decoder(decoder, path):
    with open(path, "rb") as f:
        data = f.read()
    try:
        p = subprocess.run([decoder], input=data, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return None, b"", b""
    return p.returncode, p.stdout, p.stderr


def check_valid(decoder, corpus, rel):
    path = os.path.join(corpus, rel)
    want_path = path[:-len(".toml")] + ".json"
    try:
        with open(want_path, "rb") as f:
            want = json.loads(f.read().decode("utf-8"))
    except (OSError, ValueError) as e:
        return "cannot read expected %s: %s" % (want_path, e)
    rc, out, err = run_decoder(decoder, path)
    if rc is None:
        return "timeout after %d s" % TIMEOUT_S
    if rc != 0:
        return "exit %d: %s" % (rc, err.decode("utf-8", "replace").strip()[:200])
    try:
        got = json.loads(out.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        return "decoder printed invalid JSON: %s" % e
    return diff(got, want)


def check_invalid(decoder, corpus, rel):
    rc, _, err = run_decoder(decoder, os.path.join(corpus, rel))
    if rc is None:
        return "timeout after %d s" % TIMEOUT_S
    if rc < 0:
        return "killed by signal %d" % -rc
    if rc == 0:
        return "accepted invalid input"
    if rc != 1:
        return "crashed or failed with exit %d: %s" % (
            rc, err.decode("utf-8", "replace").strip()[:200])
    msg = err.decode("utf-8", "replace").strip()
    if not ERR_RE.match(msg):
        return "error message lacks file:line:col: %r" % msg[:200]
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--decoder", required=True)
    ap.add_argument("--corpus", default="")
    ap.add_argument("-v", "--verbose", action="store_true", help="print every file")
    ap.add_argument("-j", "--jobs", type=int, default=os.cpu_count() or 2)
    args = ap.parse_args()

    corpus = find_corpus(args.corpus)
    if corpus is None:
        print("SKIP: toml-test corpus not found (tried %s)"
              % ", ".join([args.corpus] + FALLBACK_CORPORA))
        return 0
    if not os.access(args.decoder, os.X_OK):
        print("error: decoder %s is not an executable" % args.decoder, file=sys.stderr)
        return 2
    decoder = os.path.abspath(args.decoder)

    with open(os.path.join(corpus, LIST_NAME), encoding="utf-8") as f:
        listed = [l.strip() for l in f if l.strip()]
    valid = [r for r in listed if r.startswith("valid/") and r.endswith(".toml")]
    invalid = [r for r in listed if r.startswith("invalid/") and r.endswith(".toml")]

    jobs = [(check_valid, r) for r in valid] + [(check_invalid, r) for r in invalid]
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.jobs)) as ex:
        results = list(ex.map(lambda j: j[0](decoder, corpus, j[1]), jobs))

    failures = []
    for (fn, rel), res in zip(jobs, results):
        if res is not None:
            failures.append((rel, res))
        elif args.verbose:
            print("ok   %s" % rel)
    nvalid_bad = sum(1 for r, _ in failures if r.startswith("valid/"))
    ninvalid_bad = len(failures) - nvalid_bad
    for rel, why in failures:
        print("FAIL %s: %s" % (rel, why))
    print("corpus: %s (%s)" % (corpus, LIST_NAME))
    print("valid: %d/%d passed, invalid: %d/%d rejected"
          % (len(valid) - nvalid_bad, len(valid), len(invalid) - ninvalid_bad, len(invalid)))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
