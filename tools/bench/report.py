#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Tables, targets and a plot from a bench run: report.py bench-results/<ts>.

Reads results.csv (written by bench.sh from the guest's output), writes
table.txt (also printed) and bench.png: with matplotlib if it is there,
else with a small rasteriser of its own (zlib + struct), grouped bars on a
log scale. Standard library only.
"""

import csv
import math
import os
import statistics
import struct
import sys
import zlib

ENGINES = ["rnf", "nft", "nft-set", "iptables-legacy", "iptables-nft"]
COLORS = {"none": (120, 120, 120), "rnf": (214, 39, 40), "nft": (31, 119, 180),
          "nft-set": (44, 160, 44), "iptables-legacy": (255, 127, 14), "iptables-nft": (148, 103, 189)}


def load(d):
    with open(os.path.join(d, "results.csv")) as f:
        return list(csv.DictReader(f))


def num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def fmt_pps(r):
    if r is None:
        return "-"
    v = num(r["value"])
    if v is None:
        return "n/a"
    ratio = f" ({float(r['ratio']):.2f}x)" if r.get("ratio") else ""
    return f"{v:,.0f}{ratio}"


def fmt_s(r):
    if r is None:
        return "-"
    v = num(r["value"])
    if v is None:
        return "n/a"
    return f"{v * 1000:,.0f} ms" if v < 10 else f"{v:,.1f} s"


def fmt_ms(v):
    """Seconds as milliseconds, with decimals where they matter."""
    ms = v * 1000
    if ms < 1:
        return f"{ms:.2f} ms"
    if ms < 100:
        return f"{ms:.1f} ms"
    return f"{ms:,.0f} ms" if v < 10 else f"{v:,.1f} s"


def fmt_update(data, engine, n, metric):
    """An update cell: the command's time, and for rnf the time of its
    netlink request (RNFCTL_TIMING) where the run measured it."""
    cell = fmt_s(find(data, workload="filter", shape="kube", engine=engine, rules=n, metric=metric))
    req = num((find(data, workload="filter", shape="kube", engine=engine, rules=n,
                    metric=metric + "_request") or {}).get("value"))
    return cell if req is None else f"{cell} (req {fmt_ms(req)})"


def process_floor(data):
    r = find(data, workload="floor", engine="rnf", metric="process")
    return num(r["value"]) if r else None


def table(rows, headers):
    w = [max(len(str(x[i])) for x in [headers] + rows) for i in range(len(headers))]
    line = "  ".join("-" * n for n in w)
    out = ["  ".join(str(h).ljust(n) for h, n in zip(headers, w)), line]
    out += ["  ".join(str(c).ljust(n) for c, n in zip(r, w)) for r in rows]
    return out


def find(data, **kw):
    for r in data:
        if all(str(r[k]) == str(v) for k, v in kw.items()):
            return r
    return None


def round_values(data, **kw):
    """The per-round values (metric pps_round, in round order) of a row
    measured in comparison rounds."""
    return [num(r["value"]) for r in data if r["metric"] == "pps_round"
            and all(r.get(k) == str(v) for k, v in kw.items())]


def compared(data, this, other, once=None):
    """`this` row (a dict of fields) against the `other` row: the median of
    the per-round ratios where both were measured in the same rounds (a
    round takes every engine in turn, minutes apart at most), else the
    ratio of the two values measured once (the rows `once` names, a pair of
    dicts, if given; `this` and `other` otherwise). Returns (ratio, detail,
    number of rounds), ratio and detail None when not measured."""
    a, b = round_values(data, **this), round_values(data, **other)
    if a and len(a) == len(b) and all(a) and all(b):
        ratios = sorted(x / y for x, y in zip(a, b))
        med = statistics.median(ratios)
        return med, (f"{med:.2f}x, median of {len(ratios)} rounds: "
                     + " / ".join(f"{r:.2f}" for r in ratios)), len(ratios)
    this, other = once or (this, other)
    ra, rb = find(data, metric="pps", **this), find(data, metric="pps", **other)
    x, y = num(ra["value"]) if ra else None, num(rb["value"]) if rb else None
    if x and y:
        return x / y, f"{x / y:.2f}x", 0
    return None, None, 0


def sizes_of(data):
    return sorted({int(r["rules"]) for r in data if r["workload"] == "filter" and r["rules"].isdigit()})


def engines_in(data):
    return [e for e in ENGINES if any(r["engine"] == e for r in data)]


def report(data):
    out = []
    engines = engines_in(data)
    base = [num(r["value"]) for r in data
            if r["workload"] == "baseline" and r["metric"] == "pps" and num(r["value"])]
    gen = find(data, workload="generator")
    out.append("Packets per second at b (ratio to the no-firewall baseline)")
    out.append("")
    rows = [[f"no firewall ({r['note']})", fmt_pps(r)] for r in data
            if r["workload"] == "baseline" and r["metric"] == "pps"]
    if gen:
        rows.append(["generator alone (r drops at its veth)", fmt_pps(gen)])
    out += table(rows, ["reference", "pkt/s"])
    out.append("")
    out.append("1. Filter: N rules in r's FORWARD, the traffic matches only the last")
    out.append("   kube: daddr+dport -> accept; block: saddr /24 -> drop, final accept")
    out.append("   (nft-set: one vmap/set lookup holding the N entries)")
    # rnf's "empty" rows count at every hook (`rnfctl hook-counters on`,
    # the default before hook_counters=); "empty_off" is rnf as loaded now.
    rows = []
    if find(data, workload="empty_off"):
        rows.append(["empty, hook counters off", "-"]
                    + [fmt_pps(find(data, workload="empty_off", engine=e)) for e in engines])
    rows.append(["empty (rnf: hook counters on)", "-"]
                + [fmt_pps(find(data, workload="empty", engine=e)) for e in engines])
    for shape in ("kube", "block"):
        for n in sizes_of(data):
            rows.append([shape, f"{n:,}"] + [fmt_pps(find(data, workload="filter", shape=shape, engine=e,
                                                               rules=n, metric="pps")) for e in engines])
    out += table(rows, ["shape", "rules"] + engines)
    for shape in ("kube", "block"):
        pairs = sorted({(r["engine"], int(r["rules"])) for r in data if r["workload"] == "filter_pair"
                        and r["shape"] == shape and r["rules"].isdigit()}, key=lambda x: (x[0] != "rnf", x[1]))
        cells, rounds = [], 0
        for e, n in pairs:
            v = [x for x in round_values(data, workload="filter_pair", shape=shape, engine=e, rules=n) if x]
            if v:
                cells.append(f"{e} {n:,}: {statistics.median(v):,.0f}")
                rounds = max(rounds, len(v))
        if cells:
            out.append(f"   {shape}, side by side (medians of {rounds} rounds): " + "; ".join(cells))
    out.append("")
    out.append("2-4. Stateful (ct state established,related accept first) and NAT")
    st = [e for e in engines if any(r["engine"] == e and r["workload"] in ("ct_new", "ct_est", "nat") for r in data)]
    names = {"ct_new": "2. new flows/s (each packet a new UDP flow)",
             "ct_est": "3. established flows (4 UDP flows)",
             "nat": "4. DNAT + masquerade (16 UDP flows; rnf: hook counters on)"}
    if find(data, workload="nat_off"):
        names["nat_off"] = "4. DNAT + masquerade, rnf's hook counters off"
    rows = [[names[w]] + [fmt_pps(find(data, workload=w, engine=e)) for e in st] for w in names]
    out += table(rows, ["workload"] + st)
    n = len(round_values(data, workload="ct_est", engine="rnf"))
    if n:
        out.append(f"   The empty rows and these: medians of {n} rounds, each round measuring every engine"
                   " in turn;")
        out.append("   the targets compare engines by the median of their per-round ratios.")
    out.append("")
    out.append("5. Rule update latency, command start to exit (kube shape; nft-set adds a map element)")
    has_req = any(r["metric"].endswith("_request") for r in data)
    if has_req:
        out.append("   rnf (req X): rnfctl's netlink request alone, sendmsg to ack (RNFCTL_TIMING)")
    rows = []
    for n in sizes_of(data):
        rows.append([f"{n:,}", "add one"] + [fmt_update(data, e, n, "add_one") for e in engines])
        rows.append(["", "replace all"] + [fmt_update(data, e, n, "replace") for e in engines])
    out += table(rows, ["rules", "change"] + engines)
    floor = process_floor(data)
    if floor is not None:
        out.append(f"   process floor: rnfctl --version (no request), started the same way: {fmt_ms(floor)}")
    notes = sorted({(r["engine"], r["note"]) for r in data if r["note"].startswith("n/a")})
    if notes:
        out.append("")
        out.append("Not measured:")
        seen = set()
        for e, n in notes:
            key = (e, n[:90])
            if key not in seen:
                seen.add(key)
                out.append(f"  {e}: {n[:200]}")
    out.append("")
    out += targets(data)
    del base
    return out


def targets(data):
    def verdict(ok):
        return "n/a" if ok is None else ("met" if ok else "MISSED")

    out = ["Targets"]
    sizes = sizes_of(data)
    big = max(sizes) if sizes else None
    for shape in ("kube", "block"):
        pair = dict(workload="filter_pair", shape=shape, engine="rnf")
        row = dict(workload="filter", shape=shape, engine="rnf")
        ratio, detail, n = compared(data, dict(pair, rules=1), dict(pair, rules=big),
                                    once=(dict(row, rules=1), dict(row, rules=big)))
        detail = f"cost ratio {detail}{', side by side' if n else ''}" if detail else "not measured"
        ok = None if ratio is None else ratio <= 1.25
        out.append(f"  rnf cost at {big:,} rules <= 1.25x cost at 1 ({shape}): {verdict(ok)} ({detail})")
    for shape in ("kube", "block"):
        for other in ("iptables-legacy", "iptables-nft", "nft"):
            pair = dict(workload="filter_pair", shape=shape, rules=10000)
            row = dict(workload="filter", shape=shape, rules=10000)
            ratio, detail, n = compared(data, dict(pair, engine="rnf"), dict(pair, engine=other),
                                        once=(dict(row, engine="rnf"), dict(row, engine=other)))
            detail = f"{detail}{', side by side' if n else ''}" if detail else "not measured"
            ok = None if ratio is None else ratio >= 10
            out.append(f"  rnf >= 10x {other} at 10,000 rules ({shape}): {verdict(ok)} ({detail})")
    # The targets judge rnf as loaded: since hook_counters= (off by
    # default) the "_off" rows, whose notes say so; in earlier runs rnf
    # counted by default, and their "empty" and "nat" rows are judged.
    nft_empty = dict(workload="empty", engine="nft")
    def default_of(w):
        off = find(data, workload=f"{w}_off", engine="rnf", metric="pps")
        return f"{w}_off" if off and "the default" in off["note"] else w
    default_empty = default_of("empty")
    ratio, detail, _ = compared(data, dict(workload=default_empty, engine="rnf"), nft_empty)
    out.append(f"  rnf empty ({'hook counters off' if default_empty == 'empty_off' else 'hook counters on'})"
               f" >= nft empty base chain: {verdict(None if ratio is None else ratio >= 1)}"
               + (f" ({detail})" if detail else ""))
    other_empty = "empty" if default_empty == "empty_off" else "empty_off"
    ratio, detail, _ = compared(data, dict(workload=other_empty, engine="rnf"), nft_empty)
    if ratio is not None:
        out.append(f"  (not a target) rnf empty, hook counters {'on' if other_empty == 'empty' else 'off'}"
                   f" >= nft empty base chain: {verdict(ratio >= 1)} ({detail})")
    default_nat = default_of("nat")
    for w in ("ct_new", "ct_est"):
        for other in ("nft", "iptables-legacy"):
            ratio, detail, _ = compared(data, dict(workload=w, engine="rnf"), dict(workload=w, engine=other))
            out.append(f"  {w}: rnf >= {other} (nf_conntrack): "
                       f"{verdict(None if ratio is None else ratio >= 1)}" + (f" ({detail})" if detail else ""))
    for other in ("nft", "iptables-legacy"):
        ratio, detail, _ = compared(data, dict(workload=default_nat, engine="rnf"),
                                    dict(workload="nat", engine=other))
        out.append(f"  nat ({'hook counters off' if default_nat == 'nat_off' else 'hook counters on'}):"
                   f" rnf >= {other} (nf_conntrack/nf_nat): {verdict(None if ratio is None else ratio >= 1)}"
                   + (f" ({detail})" if detail else ""))
    # The other setting, for information.
    other_nat = "nat" if default_nat == "nat_off" else "nat_off"
    for other in ("nft", "iptables-legacy"):
        ratio, detail, _ = compared(data, dict(workload=other_nat, engine="rnf"), dict(workload="nat", engine=other))
        if ratio is not None:
            out.append(f"  (not a target) nat, hook counters {'on' if other_nat == 'nat' else 'off'}: "
                       f"rnf >= {other}: {verdict(ratio >= 1)} ({detail})")
    # Judged by the netlink request (RNFCTL_TIMING): the command's time is
    # mostly process start-up under TCG (see the process floor). Runs from
    # before the request timing are judged by the command time, and say so.
    a = find(data, workload="filter", shape="kube", engine="rnf", rules=100000, metric="add_one")
    q = find(data, workload="filter", shape="kube", engine="rnf", rules=100000, metric="add_one_request")
    v, req, floor = num(a["value"]) if a else None, num(q["value"]) if q else None, process_floor(data)
    if req is not None:
        detail = [f"request {fmt_ms(req)}"]
        if v is not None:
            detail.append(f"command {fmt_ms(v)}")
        if floor is not None:
            detail.append(f"process floor {fmt_ms(floor)}")
        out.append(f"  rnf add one rule to 100,000 < 10 ms: {verdict(req < 0.010)} ({'; '.join(detail)})")
    else:
        out.append(f"  rnf add one rule to 100,000 < 10 ms: {verdict(None if v is None else v < 0.010)}"
                   + (f" (command {v * 1000:.0f} ms; no request timing in this run)" if v is not None else ""))
    return out


# --- plot ----------------------------------------------------------------------
def panels(data):
    """[(title, log?, unit, groups=[(label, [(engine, value)])])]"""
    engines = engines_in(data)
    ps = []
    for shape in ("kube", "block"):
        groups = []
        for n in sizes_of(data):
            groups.append((f"{n}", [(e, num((find(data, workload="filter", shape=shape, engine=e, rules=n,
                                                   metric="pps") or {}).get("value"))) for e in engines]))
        ps.append((f"FILTER {shape.upper()} PPS VS RULES", groups))
    groups = [("BASE", [("none", num((find(data, workload="baseline") or {}).get("value")))]),
              ("EMPTY", [(e, num((find(data, workload="empty", engine=e) or {}).get("value"))) for e in engines])]
    for w in ("ct_new", "ct_est", "nat"):
        groups.append((w.upper().replace("_", " "), [(e, num((find(data, workload=w, engine=e) or {}).get("value")))
                                                     for e in engines]))
    ps.append(("STATEFUL AND NAT PPS", groups))
    for metric, title in (("add_one", "ADD ONE RULE SECONDS"), ("replace", "REPLACE ALL SECONDS")):
        groups = []
        for n in sizes_of(data):
            groups.append((f"{n}", [(e, num((find(data, workload="filter", shape="kube", engine=e, rules=n,
                                                   metric=metric) or {}).get("value"))) for e in engines]))
        ps.append((title, groups))
    return ps


def plot_matplotlib(data, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    ps = panels(data)
    fig, axes = plt.subplots(len(ps), 1, figsize=(10, 4 * len(ps)))
    for ax, (title, groups) in zip(axes, ps):
        names = [e for e in ["none"] + ENGINES if any(e == x for _, g in groups for x, _ in g)]
        width = 0.8 / max(1, len(names))
        for i, e in enumerate(names):
            xs, ys = [], []
            for gi, (_, g) in enumerate(groups):
                for x, v in g:
                    if x == e and v:
                        xs.append(gi + i * width)
                        ys.append(v)
            ax.bar(xs, ys, width, label=e, color=[c / 255 for c in COLORS[e]])
        ax.set_yscale("log")
        ax.set_xticks([gi + 0.4 - width / 2 for gi in range(len(groups))], [g for g, _ in groups])
        ax.set_title(title.capitalize())
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=80)


# A 5x8 font for the stdlib rasteriser: upper case, digits, a few signs.
FONT = {
    "A": "0111010001100011111110001100011000110001", "B": "1111010001100011111010001100011000111110",
    "C": "0111010001100001000010000100001000101110", "D": "1111010001100011000110001100011000111110",
    "E": "1111110000100001111010000100001000011111", "F": "1111110000100001111010000100001000010000",
    "G": "0111010001100001011110001100011000101111", "H": "1000110001100011111110001100011000110001",
    "I": "0111000100001000010000100001000010001110", "J": "0011100010000100001000010100101001001100",
    "K": "1000110010101001100010100100101000110001", "L": "1000010000100001000010000100001000011111",
    "M": "1000111011101011010110001100011000110001", "N": "1000111001101011001110001100011000110001",
    "O": "0111010001100011000110001100011000101110", "P": "1111010001100011111010000100001000010000",
    "Q": "0111010001100011000110101100101001001101", "R": "1111010001100011111010100100101000110001",
    "S": "0111110000100000111000001000010000111110", "T": "1111100100001000010000100001000010000100",
    "U": "1000110001100011000110001100011000101110", "V": "1000110001100011000110001010100101000100",
    "W": "1000110001100011010110101101011101110001", "X": "1000110001010100010001010100011000110001",
    "Y": "1000110001010100010000100001000010000100", "Z": "1111100001000100010001000100001000011111",
    "0": "0111010001100111010111001100011000101110", "1": "0010001100001000010000100001000010001110",
    "2": "0111010001000010001000100010001000011111", "3": "1111100010001000001000001000011000101110",
    "4": "0001000110010101001011111000100001000010", "5": "1111110000111100000100001000011000101110",
    "6": "0011001000100001111010001100011000101110", "7": "1111100001000100010001000010000100001000",
    "8": "0111010001100010111010001100011000101110", "9": "0111010001100010111100001000010001001100",
    "-": "0000000000000001111100000000000000000000", ".": "0000000000000000000000000000000110001100",
    " ": "0" * 40, "/": "0000100010000100010001000010001000010000",
}


class Canvas:
    def __init__(self, w, h):
        self.w, self.h = w, h
        self.px = bytearray(b"\xff" * (w * h * 3))

    def rect(self, x0, y0, x1, y1, c):
        x0, x1 = max(0, int(x0)), min(self.w, int(x1))
        y0, y1 = max(0, int(y0)), min(self.h, int(y1))
        for y in range(y0, y1):
            o = (y * self.w + x0) * 3
            self.px[o:o + (x1 - x0) * 3] = bytes(c) * (x1 - x0)

    def text(self, x, y, s, c=(0, 0, 0), scale=1):
        for ch in s.upper():
            g = FONT.get(ch)
            if g is None:
                x += 6 * scale
                continue
            for i, bit in enumerate(g):
                if bit == "1":
                    cx, cy = x + (i % 5) * scale, y + (i // 5) * scale
                    self.rect(cx, cy, cx + scale, cy + scale, c)
            x += 6 * scale

    def png(self, path):
        raw = b"".join(b"\x00" + bytes(self.px[y * self.w * 3:(y + 1) * self.w * 3]) for y in range(self.h))

        def chunk(t, d):
            return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xffffffff)
        with open(path, "wb") as f:
            f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", self.w, self.h, 8, 2, 0, 0, 0))
                    + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def plot_stdlib(data, path):
    ps = panels(data)
    W, PH = 900, 260
    cv = Canvas(W, PH * len(ps) + 40)
    # legend
    x = 10
    for e in ["none"] + ENGINES:
        cv.rect(x, 12, x + 12, 24, COLORS[e])
        cv.text(x + 16, 14, e)
        x += 16 + 6 * len(e) + 24
    for pi, (title, groups) in enumerate(ps):
        top = 40 + pi * PH
        x0, x1, y0, y1 = 70, W - 20, top + 25, top + PH - 35
        cv.text(x0, top + 5, title + "  (LOG SCALE)", scale=2)
        vals = [v for _, g in groups for _, v in g if v]
        if not vals:
            cv.text(x0, (y0 + y1) // 2, "NO DATA")
            continue
        lo = 10 ** math.floor(math.log10(min(vals)))
        if lo >= min(vals):
            lo /= 10
        hi = 10 ** math.ceil(math.log10(max(vals)))
        if hi <= lo:
            hi = lo * 10

        def ypos(v):
            return y1 - (math.log10(v) - math.log10(lo)) / (math.log10(hi) - math.log10(lo)) * (y1 - y0)
        d = lo
        while d <= hi * 1.0001:
            y = int(ypos(d))
            cv.rect(x0, y, x1, y + 1, (225, 225, 225))
            lab = f"{d:g}".upper().replace("E+0", "E").replace("E+", "E").replace("E-0", "E-")
            cv.text(x0 - 6 * len(lab) - 4, y - 3, lab)
            d *= 10
        cv.rect(x0, y1, x1, y1 + 1, (0, 0, 0))
        cv.rect(x0, y0, x0 + 1, y1, (0, 0, 0))
        gw = (x1 - x0) / max(1, len(groups))
        for gi, (label, g) in enumerate(groups):
            bw = (gw * 0.8) / max(1, len(g))
            for bi, (e, v) in enumerate(g):
                bx = x0 + gi * gw + gw * 0.1 + bi * bw
                if v:
                    cv.rect(bx, ypos(v), bx + bw - 1, y1, COLORS[e])
                else:
                    cv.text(int(bx + bw / 2) - 2, y1 - 10, "X", (150, 150, 150))
            cv.text(int(x0 + gi * gw + gw / 2 - 3 * len(label)), y1 + 6, label)
    cv.png(path)


def main():
    d = sys.argv[1]
    data = load(d)
    lines = report(data)
    meta = os.path.join(d, "meta.txt")
    head = []
    if os.path.exists(meta):
        with open(meta) as f:
            head = [x.rstrip() for x in f if not x.startswith("    ") and not x.startswith("profile")]
    text = "\n".join(head + [""] + lines) + "\n"
    with open(os.path.join(d, "table.txt"), "w") as f:
        f.write(text)
    print(text, end="")
    png = os.path.join(d, "bench.png")
    try:
        plot_matplotlib(data, png)
        how = "matplotlib"
    except ImportError:
        plot_stdlib(data, png)
        how = "stdlib rasteriser"
    print(f"plot: {png} ({how})")


if __name__ == "__main__":
    main()
