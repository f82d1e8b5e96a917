"""How much one load window tells: the serving reference graded against itself, window by window, at several rates.

    .venv/bin/python -m benchmarks.serving_windows [--rates 2,8,10,12] [--rounds 10] [--profile quick]

Two hosts of the reference submission start as the grader starts them (graders.serving.grade.start_host): one in
the candidate's place, one as the reference. Each round sends, at each rate, a fresh draw of requests
(client.workload's `draw`) to the candidate and then to the reference, the other one stopped, as the grader
alternates; every stream is verified against the engine's greedy output. Printed per rate: the goodput per window
(median and range over both sides) and the candidate/reference ratio per draw (median and range).
Then, for the profile's low rate with each higher rate as its top rate, the candidate/reference goodput ratio
summed over the two rates, as a grade computes it: with one window per side, and with the grader's second look
(graders.serving.load `second_look`: where the first ratio scores partly, the rates short of full credit count
each side's better of two windows, the next round standing in for the fresh draw). The share of grades under full
credit is what a regrade of the reference risks.
"""
from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
from pathlib import Path

from graders.engine.labconfig import load_lab
from graders.serving import verify
from graders.serving.client import choose_seed, drive, prompt_corpus, warmup, workload
from graders.serving.grade import device_price, reference_path, start_host
from graders.serving.load import Context, Load, goodput_band, goodput_ratio, measure_both, rates_to_look_again


def graded(ctx: Context, windows: list[dict[float, tuple[Load, Load]]], k: int, rates: list[float]) -> tuple[float, float]:
    """(ratio with one window, ratio with the second look) for round k at `rates`, by the grader's own rule
    (rates_to_look_again, Load.keep_better), round k + 1 standing in for the second look's fresh draw."""
    def at(j: int, side: int) -> Load:
        return Load(summaries={rate: windows[j][rate][side].summaries[rate] for rate in rates},
                    results={rate: [] for rate in rates})

    cand, ref = at(k, 0), at(k, 1)
    first = goodput_ratio(cand, ref)
    for rate in rates_to_look_again(ctx, cand, ref):
        cand.keep_better(at(k + 1, 0), rate)
        ref.keep_better(at(k + 1, 1), rate)
    return first, goodput_ratio(cand, ref)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default="quick", help="a [profiles.*] table of labs/serving/lab.toml (CPU)")
    ap.add_argument("--rates", default="2,8,10,12", help="requests/s; the first is every pair's low rate")
    ap.add_argument("--rounds", type=int, default=10)
    args = ap.parse_args(argv)
    lab = load_lab("serving")
    profile = lab.load_profile(args.profile)
    rates = [float(x) for x in args.rates.split(",")]
    tok, corpus = prompt_corpus()
    ctx = Context(lab=lab, profile_name=args.profile, out=Path(tempfile.mkdtemp()), tokenizer=tok, corpus_ids=corpus,
                  usd_per_hour=device_price(lab, profile))
    seed, source = choose_seed(profile.seed)
    spec = {"seed": seed, "duration_s": profile.duration_s, "prompt_tokens": profile.prompt_tokens,
            "output_tokens": profile.output_tokens}
    print(f"load seed {seed} ({source}); {args.rounds} rounds at {args.rates}/s, {profile.duration_s:g} s windows",
          file=sys.stderr, flush=True)
    draws = {(rate, k): workload(spec, rate, tok, corpus, draw=k + 1) for rate in rates for k in range(args.rounds)}
    warm = warmup(spec, 2, tok, corpus)
    ctx.greedy = verify.greedy_texts([(p, n) for reqs in [warm, *draws.values()] for _, p, n in reqs])
    source_code = reference_path(lab).read_text()
    windows: list[dict[float, tuple[Load, Load]]] = []  # per round, per rate: (candidate's, reference's)
    cand = start_host(source_code, "candidate", lab, profile)
    try:
        ctx.reference = ref = start_host(source_code, "reference", lab, profile)
        try:
            for w in (cand, ref):
                asyncio.run(drive(w.url, warm, profile.client_timeout_s))
            for k in range(args.rounds):
                windows.append({rate: (Load(), Load()) for rate in rates})
                for rate in rates:
                    measure_both(cand, ctx, rate, windows[k][rate], f"round {k + 1}: {rate:g}/s", draws[(rate, k)])
                print(f"round {k + 1}/{args.rounds}: " + ", ".join(
                    f"{rate:g}/s {c.goodput(rate):.2f} vs {r.goodput(rate):.2f}" for rate, (c, r) in windows[k].items()),
                    file=sys.stderr, flush=True)
        finally:
            ref.cleanup()
    finally:
        cand.cleanup()
    goodput = {who: [[w[rate][side].goodput(rate) for w in windows] for rate in rates]
               for side, who in enumerate(("candidate", "reference"))}

    print(f"\ngoodput per {profile.duration_s:g} s window (requests/s meeting the SLO), {args.rounds} windows per side;"
          "\nthe ratio is the candidate's over the reference's on the same draw of requests")
    print(f"{'rate':>5}  {'goodput: median':>15}  {'min':>5}  {'max':>5}  {'ratio: median':>13}  {'min':>5}  {'max':>5}")
    for i, rate in enumerate(rates):
        g = goodput["candidate"][i] + goodput["reference"][i]
        ratios = [c / r if r > 0 else 0.0 for c, r in zip(goodput["candidate"][i], goodput["reference"][i])]
        print(f"{rate:>5g}  {statistics.median(g):>15.2f}  {min(g):>5.2f}  {max(g):>5.2f}  "
              f"{statistics.median(ratios):>13.2f}  {min(ratios):>5.2f}  {max(ratios):>5.2f}")
    band = goodput_band(ctx)
    print(f"\nthe reference against itself, ratio of goodput sums (full credit at >= {band[1]}, none at <= {band[0]})")
    print(f"{'rates':>8}  {'one window: median':>18}  {'min':>5}  {'< full':>7}  {'second look: min':>16}  {'< full':>7}")
    for i in range(1, len(rates)):
        pairs = [graded(ctx, windows, k, [rates[0], rates[i]]) for k in range(args.rounds - 1)]
        one = [p[0] for p in pairs]
        two = [p[1] for p in pairs]
        print(f"{f'{rates[0]:g},{rates[i]:g}':>8}  {statistics.median(one):>18.2f}  {min(one):>5.2f}  "
              f"{sum(x < band[1] for x in one):>3} of {len(one):<2}  {min(two):>16.2f}  {sum(x < band[1] for x in two):>3} of {len(two):<2}")


if __name__ == "__main__":
    main()
