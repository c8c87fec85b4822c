"""Recomputes a `reproduce` report's numbers from its run records and lists every difference.

    python3 scripts/check_results.py docs/results.md [docs/results-runs.json [docs/results-items.json.gz]]

The records file defaults to the report's `-runs.json` sibling, the per-item counts to its
`-items.json.gz` sibling. Checked, independently of the Rust code that wrote the report:

- every record has one entry of per-item counts (or a reference to another seed's), and its
  test score equals the score of those counts (2·Σc / (Σp + Σg));
- every cell of the "Test scores" tables (mean ± sample sd over seeds, a seed's score being
  the mean over its pre-finetuning seeds), the family averages (tag-accuracy tasks, the damage
  checks, stay out of them) and the point estimate of every "Δ vs no PF" cell, the damage
  checks' included;
- the seeds the report lists are the records' seeds, and no task of the sizes table has 0
  examples.

Exits 1 when anything differs. Only the standard library is used.
"""

import gzip
import json
import re
import statistics
import sys
from collections import defaultdict

ARMS = {
    "no PF": "no-pf",
    "NER PF": "ner-pf",
    "TC PF": "tc-pf",
    "naive MTL PF": "naive",
    "MTPF-TPL": "mtpf-tpl",
}


def item_score(items):
    """2·Σc / (Σp + Σg) of items `n` (c = p = g), `c,n` (p = g) or `c,p,g`."""
    c = p = g = 0
    for item in items.split(";"):
        n = [int(x) for x in item.split(",")]
        ci, pi, gi = {1: lambda: (n[0],) * 3, 2: lambda: (n[0], n[1], n[1]), 3: lambda: n}[len(n)]()
        c, p, g = c + ci, p + pi, g + gi
    return 0.0 if p + g == 0 else 2.0 * c / (p + g)


def per_seed(records):
    """(arm, task, pct) -> seed -> mean test over pre-finetuning seeds (default setting)."""
    runs = defaultdict(lambda: defaultdict(list))
    for r in records:
        if r["setting"] != "default":
            continue
        key = (r["arm"], r["task"], round(r["fraction"] * 100))
        runs[key][r["seed"]].append(r["test"])
    return {k: {s: sum(v) / len(v) for s, v in by.items()} for k, by in runs.items()}


def cell(values):
    if not values:
        return "–"
    mean = sum(values) / len(values)
    if len(values) == 1:
        return f"{100 * mean:.2f}"
    return f"{100 * mean:.2f} ± {100 * statistics.stdev(values):.2f}"


def main(argv):
    if len(argv) < 2:
        print(__doc__)
        return 2
    report_path = argv[1]
    runs_path = argv[2] if len(argv) > 2 else re.sub(r"\.md$", "-runs.json", report_path)
    items_path = argv[3] if len(argv) > 3 else re.sub(r"-runs\.json$", "-items.json.gz", runs_path)
    with open(report_path, encoding="utf-8") as f:
        report = f.read()
    with open(runs_path, encoding="utf-8") as f:
        records = json.load(f)
    with gzip.open(items_path, "rt", encoding="utf-8") as f:
        entries = json.load(f)
    problems = []

    def key(r, seed):
        return (r["setting"], r["protocol"], r["arm"], r["task"], r["fraction"], r["pf_seed"], seed)

    # Counts written once for entries whose counts are another seed's (`as_seed`).
    items_of = {}
    for e in entries:
        if key(e, e["seed"]) in items_of:
            problems.append(f"two items entries for {key(e, e['seed'])}")
        items_of[key(e, e["seed"])] = e
    if len(entries) != len(records):
        problems.append(f"{len(entries)} items entries for {len(records)} records")
    for i, r in enumerate(records):
        e = items_of.get(key(r, r["seed"]))
        if e is None:
            problems.append(f"record {i} ({r['arm']} {r['task']}): no items entry")
            continue
        if "as_seed" in e:
            e = items_of.get(key(r, e["as_seed"]), {})
        if not e.get("items"):
            problems.append(f"record {i} ({r['arm']} {r['task']}): its items entry has no counts")
            continue
        s = item_score(e["items"])
        if abs(s - r["test"]) > 1e-9:
            problems.append(f"record {i} ({r['arm']} {r['task']}): test {r['test']} but its items score {s}")

    seeds = sorted({r["seed"] for r in records})
    m = re.search(r"Seeds in the records: \{([0-9, ]*)\}", report)
    if not m:
        problems.append("the report lists no seeds of the records")
    elif sorted(int(x) for x in m.group(1).split(",") if x.strip()) != seeds:
        problems.append(f"the report lists seeds {{{m.group(1)}}}, the records have {seeds}")

    scores = per_seed(records)
    tables = 0
    for section in re.split(r"\n## ", report):
        m = re.match(r"Test scores, (\d+)% of the training data", section)
        if not m:
            continue
        tables += 1
        pct = int(m.group(1))
        lines = [l for l in section.splitlines() if l.startswith("|")]
        header = [c.strip() for c in lines[0].strip("|").split("|")]
        arms = [ARMS[h] for h in header[2:]]
        family_tasks = defaultdict(list)
        for r in records:
            if round(r["fraction"] * 100) == pct and r["metric"] != "tag accuracy":
                family_tasks[r["family"]].append(r["task"])
        for line in lines[2:]:
            cells = [c.strip() for c in line.strip("|").split("|")]
            name = cells[0]
            fam = re.match(r"\*\*(\w+) average\*\*", name)
            damage = re.match(r"(\S+) Δ vs no PF \(damage check\)$", name)
            delta = damage or re.match(r"(\w+) Δ vs no PF$", name)
            for arm, shown in zip(arms, cells[2:]):
                if fam or delta:
                    if damage and arm == "no-pf":
                        if shown != "–":
                            problems.append(f"{pct}% {name}: no PF against itself shows {shown}")
                        continue
                    if damage:
                        tasks = [damage.group(1)]
                    else:
                        family = (fam or delta).group(1)
                        tasks = sorted(set(family_tasks[family]), key=family_tasks[family].index)
                    means = []
                    for t in tasks:
                        v = scores.get((arm, t, pct), {})
                        means.append(sum(v.values()) / len(v) if v else None)
                    if fam:
                        want = "–" if None in means else f"**{100 * sum(means) / len(means):.2f}**"
                        if shown != want:
                            problems.append(f"{pct}% {name} {arm}: report {shown}, records {want}")
                        continue
                    # Δ: per seed complete in both arms, the family mean of the differences.
                    common = None
                    for t in tasks:
                        for a in (arm, "no-pf"):
                            s = set(scores.get((a, t, pct), {}))
                            common = s if common is None else common & s
                    if not common or shown == "–":
                        if bool(common) != (shown != "–"):
                            problems.append(f"{pct}% {name} {arm}: report {shown}, records have {'a' if common else 'no'} complete seed")
                        continue
                    per = [
                        sum(scores[(arm, t, pct)][s] - scores[("no-pf", t, pct)][s] for t in tasks) / len(tasks)
                        for s in sorted(common)
                    ]
                    want = 100 * sum(per) / len(per)
                    got = float(shown.split()[0].replace("−", "-"))
                    if abs(got - want) > 0.0051:
                        problems.append(f"{pct}% {name} {arm}: report {got:+.2f}, records {want:+.2f}")
                    continue
                want = cell(list(scores.get((arm, name, pct), {}).values()))
                if shown != want:
                    problems.append(f"{pct}% {name} {arm}: report {shown}, records {want}")
    if tables == 0:
        problems.append("no test-score table found")

    sizes = re.search(r"\n\| task \| family \| metric \|.*?\n\n", report, re.S)
    if sizes:
        for line in sizes.group(0).splitlines()[2:]:
            cells = [c.strip() for c in line.strip("|").split("|")]
            if any(c == "0" for c in cells[3:-1]):
                problems.append(f"sizes table: a size of 0 in `{line[:80]}`")

    for p in problems:
        print(p)
    print(f"{report_path}: {len(records)} records, {tables} tables, {len(problems)} differences")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
