"""Interleaved rounds: start every row's daemons first, then measure the rows
in turn, several times (A B C D, A B C D, ...), and keep each row's best
run. On a shared 2-core machine the load from outside then hits the rows of
a round alike instead of one row. Each row shows its best run and the
mean of its runs; the verdicts compare means: a best-of ratio rewards the
row with the widest spread (a single-threaded anchor that the scheduler
sometimes places well), a mean weighs every round alike. Used by the http
and connrate sections (5a has its own variant)."""
from . import proc
from .ctx import Skip


def run(ctx, table, rows, rounds, measure, key, runs_fmt="{:.0f}"):
    """rows: [(name, start, detail)]; start() -> (target, [Proc]) where
    target is passed to measure(name, target, first) -> dict of cells (must
    hold `key`). Adds one table row per name: the cells of its best run by
    `key`, plus "runs" (every run's key, in order) and "mean" (their mean). A row whose start or any
    run fails becomes an error row. Returns {name: [runs]}."""
    state = {}
    try:
        for name, start, _ in rows:
            st = state[name] = {"runs": [], "best": None, "busy": 0.0, "err": None,
                                "procs": []}
            ctx.log("%s: starting %s" % (table.title.split(" ")[0], name))
            try:
                st["target"], st["procs"] = start()
            except Skip as e:
                st["err"] = str(e)
            except Exception as e:          # noqa: BLE001 - report, go on
                st["err"] = "error: %s" % (str(e) or type(e).__name__)
        for rnd in range(rounds):
            for name, _, _ in rows:
                st = state[name]
                if st["err"]:
                    continue
                ctx.log("%s: round %d/%d %s ..." % (table.title, rnd + 1, rounds, name))
                foreign = proc.ForeignCpu().start()
                try:
                    v = measure(name, st["target"], rnd == 0)
                    for p in st["procs"]:
                        if not p.alive():
                            raise RuntimeError("%s died" % p.name)
                except Exception as e:      # noqa: BLE001
                    st["err"] = "error: %s" % (str(e) or type(e).__name__)
                    ctx.log("  %s" % st["err"])
                    continue
                st["busy"] = max(st["busy"], foreign.cores())
                st["runs"].append(v[key])
                if st["best"] is None or v[key] > st["best"][key]:
                    st["best"] = v
                ctx.log("  %s=%s" % (key, runs_fmt.format(v[key])))
    finally:
        for name, _, _ in reversed(rows):
            for p in reversed(state.get(name, {}).get("procs", [])):
                p.stop()
    for name, _, detail in rows:
        st = state[name]
        if st["err"]:
            table.fail(name, st["err"], detail)
            continue
        if st["busy"] >= 0.1:
            detail = (detail + "; " if detail else "") + \
                "machine busy: other processes used up to %.1f cores" % st["busy"]
        cells = dict(st["best"])
        cells["runs"] = " / ".join(runs_fmt.format(r) for r in st["runs"])
        cells["mean"] = sum(st["runs"]) / len(st["runs"])
        table.add(name, detail, **cells)
    return {name: st["runs"] for name, st in state.items() if not st["err"]}


def per_round_note(table, runs, num, den, label):
    """A note with num/den per round, when both rows have all their runs."""
    a, b = runs.get(num), runs.get(den)
    if a and b and len(a) == len(b):
        table.note("%s per round: %s" % (label, " / ".join(
            "%.2f×" % (x / y) for x, y in zip(a, b) if y)))
