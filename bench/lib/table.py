"""Results table: named rows of numeric cells, failed rows, ratio lines
computed from rows of the same run, and markdown rendering."""


class Col:
    def __init__(self, key, header, fmt="{:.0f}"):
        self.key = key
        self.header = header
        self.fmt = fmt

    def render(self, v):
        if v is None:
            return "–"
        if isinstance(v, str):
            return v
        return self.fmt.format(v)


class Table:
    """t = Table("Forward HTTP", [Col("rps", "req/s"), ...])
    t.add("tinyproxy", rps=1234.5, ...)       # a measured row
    t.fail("ours", "error: connection refused")
    t.ratio("ours / tinyproxy", "ours", "tinyproxy", "rps", ">= 3")
    print(t.markdown())
    """

    def __init__(self, title, cols, first="Row"):
        self.title = title
        self.cols = cols
        self.first = first
        self.rows = []          # (name, {key: value}, error or None, detail)
        self.ratios = []        # (label, value or None, target, met or None, why)
        self.notes = []

    # --- rows -------------------------------------------------------------
    def add(self, name, detail="", **values):
        self.rows.append((name, values, None, detail))

    def fail(self, name, error, detail=""):
        error = " ".join(str(error).split())      # one line for markdown
        if len(error) > 200:                        # keep head and tail
            error = error[:90] + " ... " + error[-100:]
        self.rows.append((name, {}, error.replace("|", "/"), detail))

    def get(self, name, key):
        for n, vals, err, _ in self.rows:
            if n == name and err is None:
                v = vals.get(key)
                return v if isinstance(v, (int, float)) else None
        return None

    def set(self, name, key, value):
        """Set one cell of an existing (non-failed) row."""
        for n, vals, err, _ in self.rows:
            if n == name and err is None:
                vals[key] = value

    def note(self, text):
        self.notes.append(text)

    # --- ratios -----------------------------------------------------------
    def ratio(self, label, num, den, key, target=None):
        """num/den may be a row name or a list of names (the best one is
        used). target like '>= 3' or '<= 1'."""
        a = self._best(num, key)
        b = self._best(den, key)
        if a is None or b is None or not b:
            missing = [n for n, v in ((num, a), (den, b)) if v is None]
            why = "n/a (%s missing)" % ", ".join(
                "/".join(m) if isinstance(m, list) else m for m in missing)
            self.ratios.append((label, None, target, None, why))
            return None
        r = a / b
        met = None
        if target:
            op, val = target.split()
            met = r >= float(val) if op == ">=" else r <= float(val)
        self.ratios.append((label, r, target, met, ""))
        return r

    def limit(self, label, name, key, target, unit=""):
        """An absolute check in the ratio table: row `name`'s `key` against
        target like '<= 10' (same unit as the cell), e.g. a latency bound."""
        v = self.get(name, key)
        if v is None:
            self.ratios.append((label, None, target, None,
                                "n/a (%s missing)" % name))
            return None
        op, val = target.split()
        met = v >= float(val) if op == ">=" else v <= float(val)
        self.ratios.append((label, None, target + (" " + unit if unit else ""), met,
                            "%.2f%s" % (v, " " + unit if unit else "")))
        return v

    def _best(self, names, key):
        if isinstance(names, str):
            return self.get(names, key)
        vals = [self.get(n, key) for n in names]
        vals = [v for v in vals if v is not None]
        return max(vals) if vals else None

    # --- output -----------------------------------------------------------
    def markdown(self):
        out = ["### " + self.title, ""]
        hdr = [self.first] + [c.header for c in self.cols]
        has_detail = any(d for _, _, _, d in self.rows)
        if has_detail:
            hdr.append("notes")
        out.append("| " + " | ".join(hdr) + " |")
        out.append("|" + "|".join(["---"] + ["---:"] * len(self.cols)
                                   + (["---"] if has_detail else [])) + "|")
        for name, vals, err, detail in self.rows:
            if err is not None:
                cells = [err] + ["–"] * (len(self.cols) - 1)
            else:
                cells = [c.render(vals.get(c.key)) for c in self.cols]
            row = [name] + cells + ([detail] if has_detail else [])
            out.append("| " + " | ".join(row) + " |")
        if self.ratios:
            out += ["", "| ratio | value | target | met |", "|---|---:|---|---|"]
            for label, r, target, met, why in self.ratios:
                v = "%.2f×" % r if r is not None else why
                m = "–" if met is None else ("yes" if met else "**no**")
                out.append("| %s | %s | %s | %s |" % (label, v, target or "", m))
        if self.notes:
            out.append("")
            out += ["- " + n for n in self.notes]
        out.append("")
        return "\n".join(out)
