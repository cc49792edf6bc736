"""Endpoint outages under steady load: is scoring back soon after, and what did the outage cost?

    python -m bench.outage [--rate 200] [--spell-s 20] [--runs 1] [--cwd OTHER_CHECKOUT]

Processor, emulator (limit 8, 20 ms) and load generator run as separate processes. The load
is ``--rate`` events/s throughout; the Fraud Score API Task is healthy, then answers 503 to
every execute for ``--spell-s``, is healthy again, then hangs every execute for 3 s (longer
than the 2 s attempt timeout) for ``--spell-s``, and is healthy to the end. Per spell it
prints the executes the emulator saw against the events offered meanwhile (bound: 5%), how
long after the heal the first scored (not fallback) decision arrived (bound: 5 s), and the
share of events scored once the endpoint had 5 s to recover. Over the whole run: events lost
or duplicated, dead letters, and the share decided within SLA + 100 ms at a downstream
reader (bound: 99%). Exits 1 when a bound is missed.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.stack import ROOT, Emulator, Reader, Topics, emulator, finish, loadgen, processor

SLA_S = 0.5

FAULTS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "503s": ({"error_rate": 1.0, "error_status": 503}, {"error_rate": 0.0}),
    "hangs": ({"hang_rate": 1.0, "hang_max_seconds": 3}, {"hang_rate": 0.0}),
}


@dataclass
class Spell:
    name: str
    start: float
    healed: float
    executes: int


def run_once(args: argparse.Namespace) -> dict[str, Any]:
    topics = Topics.fresh(partitions=6)
    calm, spell_s = args.calm_s, args.spell_s
    total_s = calm + 2 * (spell_s + calm)
    spells: list[Spell] = []
    with (
        emulator(8, 20.0, cwd=args.cwd) as emu,
        processor(topics, emu.url, cwd=args.cwd) as _proc,
        Reader(topics) as reader,
    ):
        gen = loadgen(topics.input, rate=args.rate, duration_s=total_s)
        time.sleep(calm)  # the schedule of the run itself, not synchronisation
        for name, (fault, heal) in FAULTS.items():
            spells.append(_spell(emu, name, fault, heal, spell_s))
            time.sleep(calm)
        produced = finish(gen)
        reader.wait_for(produced["sent"], 30)
        outputs = list(reader.outputs)
    by_id = Counter(o.event_id for o in outputs)
    decisions = [o for o in outputs if not o.dead_letter]
    on_time = sum(1 for o in decisions if o.occurred and o.received - o.occurred <= SLA_S + 0.1)
    result: dict[str, Any] = {
        "offered": produced["sent"],
        "lost": produced["sent"] - len(by_id),
        "duplicated": sum(n - 1 for n in by_id.values() if n > 1),
        "dead_letters": sum(1 for o in outputs if o.dead_letter),
        "on_time_share": on_time / max(1, len(decisions)),
        "fallback_reasons": dict(Counter(o.reason for o in decisions if o.fallback)),
        "spells": [],
    }
    for spell in spells:
        offered = sum(
            1 for o in decisions if o.occurred and spell.start <= o.occurred < spell.healed
        )
        resumed = min(
            (o.received for o in decisions if not o.fallback and o.received > spell.healed),
            default=float("inf"),
        )
        after = (spell.healed + 5, spell.healed + calm)
        settled = [o for o in decisions if o.occurred and after[0] <= o.occurred < after[1]]
        result["spells"].append(
            {
                "fault": spell.name,
                "offered": offered,
                "executes": spell.executes,
                "executes_share": spell.executes / max(1, offered),
                "resumed_after_s": resumed - spell.healed,
                "scored_share_after_5s": sum(1 for o in settled if not o.fallback)
                / max(1, len(settled)),
            }
        )
    return result


def _spell(
    emu: Emulator, name: str, fault: dict[str, Any], heal: dict[str, Any], spell_s: float
) -> Spell:
    before = emu.attempted()
    emu.set_behavior(**fault)
    start = time.time()
    time.sleep(spell_s)  # the outage lasts this long
    emu.set_behavior(**heal)
    healed = time.time()
    return Spell(name, start, healed, emu.attempted() - before)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=200.0, help="events/s offered (200)")
    parser.add_argument("--spell-s", type=float, default=20.0, help="each outage (20 s)")
    parser.add_argument("--calm-s", type=float, default=12.0, help="healthy gaps (12 s)")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--cwd", type=Path, default=ROOT, help="checkout whose streamproc runs")
    args = parser.parse_args(argv)
    ok = True
    for run in range(1, args.runs + 1):
        r = run_once(args)
        print(
            f"run={run} offered={r['offered']} lost={r['lost']} duplicated={r['duplicated']} "
            f"dead_letters={r['dead_letters']} on_time_share={r['on_time_share']:.4f} "
            f"(bound 0.99) fallbacks={r['fallback_reasons']}"
        )
        ok &= r["lost"] == 0 and r["dead_letters"] == 0 and r["on_time_share"] >= 0.99
        for s in r["spells"]:
            print(
                f"  {s['fault']:>5}: executes={s['executes']} offered={s['offered']} "
                f"executes_share={s['executes_share']:.3f} (bound 0.05) "
                f"resumed_after_s={s['resumed_after_s']:.2f} (bound 5) "
                f"scored_share_after_5s={s['scored_share_after_5s']:.3f}"
            )
            ok &= s["executes_share"] < 0.05 and s["resumed_after_s"] <= 5
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
