"""The embedded default dataset: a generated e-commerce customer-support knowledge base.

`support_kb(n_docs, seed)` builds, with nothing but string templating and
`random.Random(seed)`, a KB of
- policies (returns and warranty per region x category, shipping and refunds per region x
  membership tier, price adjustments per region, one global overview per policy type),
- how-to guides per product category, order-status explainers with codes like "OS-214",
- products in families of three siblings ("AX-420", "AX-425", "AX-428"): a spec sheet and
  four troubleshooting articles each, with error codes like "E-1043" shared by siblings.

Near-duplicates are deliberate hard negatives: the same policy for another region, tier or
category, the same error on a sibling model. Judgements are graded: 2 = the document that
answers, 1 = partially useful (the policy overview; the product's spec sheet for a fault, its
troubleshooting articles for a spec question),
0 = judged hard negative. The kind of a query is the suffix of its id
(`q-dev-0007-para` / `-code` / `-mixed`, see `query_kind`):
- para: natural-language questions in the customer's words ("sneakers", "send back",
  "in Sydney") rather than the document's ("footwear", "return", "Australia");
- code: model, error and order-status codes, where exact tokens decide;
- mixed: a model code plus a paraphrased symptom, where both signals are needed.

Everything is a pure function of (n_docs, seed): docs are generated product by product
from per-family seeds, so `iter_docs` streams a 1M-doc KB without holding it, and queries
address documents by arithmetic on their position.

Baselines measured with `benchmarks/dataset_baselines.py` (default 1200 docs, seed 0;
BM25 = bm25s with English stop words, dense = all-MiniLM-L6-v2 exact inner product,
hybrid = reciprocal-rank fusion k=60 of the two top-100 lists), nDCG@10:

    split  kind      n  method   nDCG@10   R@100   RR@10
    dev    all     100  bm25       0.662   0.880   0.758
    dev    all     100  dense      0.703   0.903   0.854
    dev    all     100  hybrid     0.714   0.970   0.831
    dev    code     34  bm25       0.974   1.000   1.000
    dev    code     34  dense      0.741   0.950   0.897
    dev    code     34  hybrid     0.865   1.000   1.000
    dev    mixed    34  bm25       0.723   1.000   0.863
    dev    mixed    34  dense      0.725   0.838   0.910
    dev    mixed    34  hybrid     0.764   1.000   0.887
    dev    para     32  bm25       0.264   0.625   0.391
    dev    para     32  dense      0.638   0.922   0.749
    dev    para     32  hybrid     0.501   0.906   0.592
    test   all     300  bm25       0.695   0.908   0.795
    test   all     300  dense      0.687   0.901   0.828
    test   all     300  hybrid     0.724   0.990   0.819
    test   code    107  bm25       0.970   1.000   1.000
    test   code    107  dense      0.682   0.947   0.816
    test   code    107  hybrid     0.880   1.000   0.975
    test   mixed   110  bm25       0.760   1.000   0.903
    test   mixed   110  dense      0.685   0.809   0.853
    test   mixed   110  hybrid     0.759   1.000   0.881
    test   para     83  bm25       0.253   0.669   0.388
    test   para     83  dense      0.698   0.964   0.810
    test   para     83  hybrid     0.477   0.964   0.536

Dense wins paraphrases, BM25 wins codes, and RRF is best overall on both splits. On mixed
queries fusion wins on dev but only ties BM25 on test: BM25 always puts the product's short spec
sheet (gain 1) first, dense puts the answering article first but pulls in sibling models'
articles. The same script on Cranfield gives 0.352 / 0.381 / 0.408 (BM25 / dense / RRF,
all 225 queries), matching the collection's README, which checks the measuring code.
"""
from __future__ import annotations

import random
import re
from collections.abc import Iterator

from graders.datasets import embedded_catalog as cat
from graders.datasets.types import Dataset, Doc, Qrels, Split

DEFAULT_DOCS = 1200
MIN_DOCS = 100
N_DEV, N_TEST = 100, 300
DOCS_PER_PRODUCT = 5  # spec sheet + four troubleshooting articles
SIBLING_SUFFIXES = ("0", "5", "8")
_LETTERS = "ABCDEFGHJKLMNPRSTVWXZ"
_CODE_SPACE = len(_LETTERS) ** 2 * 90  # two-letter prefix x decade 10..99
_KIND = re.compile(r"-(para|code|mixed)$")


def query_kind(qid: str) -> str:
    """'para', 'code' or 'mixed' for a support-kb query id; '' for ids of other datasets."""
    m = _KIND.search(qid)
    return m.group(1) if m else ""


def _doc_id(i: int, n_docs: int) -> str:
    return f"kb-{i:0{max(5, len(str(n_docs - 1)))}d}"


# ---------------------------------------------------------------- static documents (policies, guides, statuses)

def _static_docs(seed: int) -> list[tuple[str, str, str]]:
    """(key, title, text) for every document that does not belong to one product, in a fixed order."""
    rng = random.Random(f"support-kb-static:{seed}")
    regions = list(cat.REGIONS)
    cats = {**cat.CATEGORIES, **cat.POLICY_ONLY_CATEGORIES}
    groups: list[list[tuple[str, str, str]]] = []

    groups.append([
        ("overview:returns", "Returns policy overview",
         ("Most items can be returned for a refund or exchange within a set number of days of delivery. "
         "The exact return window, return shipping cost and condition rules depend on the country you "
         "ordered from and on the product category; see the regional return policy for your category. "
         "Final sale items, gift cards and opened personal care products cannot be returned.")),
        ("overview:warranty", "Warranty overview",
         ("Every product we sell carries a warranty against manufacturing defects. The length of cover "
         "depends on the product category and on consumer law in your country. Accidental damage, "
         "liquid damage and normal wear are excluded unless you bought a protection plan. Start a "
         "claim from Orders with the serial number and a photo or video of the fault.")),
        ("overview:shipping", "Shipping overview",
         ("Delivery speed and cost depend on your country and on your membership tier. Orders placed "
         "before the daily cut-off leave the warehouse the same business day. Tracking details are "
         "emailed once the carrier scans the parcel. See the regional shipping page for your tier.")),
        ("overview:refunds", "Refunds overview",
         ("Refunds go back to the original payment method after the returned item passes inspection. "
         "How fast the money arrives depends on your membership tier, your country and your bank. "
         "Store credit is issued instantly if you choose it instead of a card refund.")),
        ("overview:price", "Price adjustment overview",
         ("If the price of an item drops shortly after you buy it, you may be eligible for a one-time "
         "price adjustment. Eligibility windows differ by country. Marketplace sellers, flash deals "
         "and clearance prices are excluded. Adjustments are paid as store credit or to the original card. "
         "See the regional price adjustment page for the exact window in your country.")),
    ])

    returns, warranty = [], []
    for region in regions:
        short = cat.REGIONS[region][0]
        for ckey, (noun, plural, _) in cats.items():
            days = rng.choice([14, 30, 30, 45, 60, 90])
            extra = rng.choice([15, 30, 30, 60])
            paid = rng.random() < 0.4
            fee = rng.choice([4.95, 5.99, 7.5, 9.99])
            cond = ("unworn and with the original tags and box" if ckey in cat.POLICY_ONLY_CATEGORIES
                    else "complete, with all accessories and the original packaging")
            returns.append((
                f"returns:{region}:{ckey}", f"Return policy for {plural} — {region} ({short})",
                f"Customers in the {region} can return {plural} within {days} days of delivery. The item must be "
                f"{cond}. "
                + (f"Return shipping costs {fee} and is deducted from the refund. " if paid
                   else "Return shipping is free with the prepaid label. ")
                + f"Plus and Premier members in the {region} get an extra {extra} days to return {plural}. "
                f"Refunds are issued once the item passes inspection. To start a return, open Orders, "
                f"choose the item and select Start a return, then drop the parcel at any carrier point."))
            years = rng.choice([1, 1, 2, 2, 3]) + (1 if region == "European Union" else 0)
            months = rng.choice([6, 12]) if ckey in cat.POLICY_ONLY_CATEGORIES else 12 * years
            warranty.append((
                f"warranty:{region}:{ckey}", f"Warranty for {plural} — {region} ({short})",
                (f"{plural.capitalize()} bought in the {region} are covered against manufacturing defects for "
                f"{months} months from delivery. During the first {min(months, 6)} months we repair, replace or "
                f"refund a faulty {noun} at no cost, including shipping. After that, the claim goes to the "
                f"manufacturer's service partner in the {region}. Damage from drops, liquid or misuse is not "
                f"covered. Keep the order number; it is your proof of purchase.")))
    groups += [returns, warranty]

    shipping, refunds, price = [], [], []
    for region in regions:
        short = cat.REGIONS[region][0]
        base_days = rng.choice([2, 3, 4, 5])
        for t, tier in enumerate(cat.TIERS):
            days = max(1, base_days - t)
            threshold = [rng.choice([35, 49, 50]), rng.choice([25, 0]), 0][t]
            fee = rng.choice([3.99, 4.99, 6.95])
            shipping.append((
                f"shipping:{region}:{tier}", f"Shipping times and costs — {region} ({short}), {tier} members",
                f"{tier} members in the {region} receive standard delivery in {days}-{days + 2} business days. "
                + (f"Standard delivery is free on orders over {threshold}; below that it costs {fee}. " if threshold
                   else "Standard delivery is always free. ")
                + (f"Express next-day delivery costs {fee + 5:.2f}. " if t < 2 else "Express next-day delivery is included. ")
                + f"Large items such as televisions are delivered by a two-person crew and may take longer. "
                f"Orders ship from a warehouse in the {region}."))
            rdays = max(1, rng.choice([5, 7, 10]) - 3 * t)
            refunds.append((
                f"refunds:{region}:{tier}", f"Refund processing time — {region} ({short}), {tier} members",
                f"For {tier} members in the {region}, refunds are processed within {rdays} business days after the "
                f"returned item arrives at our warehouse and passes inspection. "
                + ("Premier members are refunded as soon as the carrier scans the return parcel. " if t == 2 else "")
                + f"The money goes back to the original payment method; card issuers in the {region} may take a "
                f"further 3-5 days to show it. Store credit is available instantly as an alternative."))
        window = rng.choice([7, 14, 30])
        price.append((
            f"price:{region}", f"Price adjustment policy — {region} ({short})",
            (f"In the {region}, if the price of an item you bought drops within {window} days of delivery, "
            f"contact support for a one-time price adjustment of the difference, paid as store credit or to "
            f"your card. Adjustments do not apply to flash deals, clearance items or marketplace sellers. "
            f"Competitor prices are not matched in the {region}.")))
    groups += [shipping, refunds, price]

    guides = []
    for topic, title, body, _ in cat.GUIDES:
        for ckey, (noun, plural, _) in cat.CATEGORIES.items():
            guides.append((f"guide:{topic}:{ckey}", title.format(noun=noun, plural=plural),
                           body.format(noun=noun, plural=plural, extra=cat.GUIDE_EXTRA[ckey])))
    groups.append(guides)

    statuses = []
    codes = rng.sample(range(100, 1000), len(cat.ORDER_STATUSES))
    for (name, meaning), code in zip(cat.ORDER_STATUSES, codes):
        statuses.append((
            f"status:OS-{code}", f"Order status OS-{code}: {name}",
            (f"When your order page shows status OS-{code} ({name}), it means {meaning}. Status codes update "
            f"automatically; you do not need to contact us unless the order stays at OS-{code} for more than "
            f"five business days. You can still cancel an order free of charge until it reaches Handed to carrier.")))
    groups.append(statuses)

    # Round-robin over the groups so a small KB still holds every kind of document.
    out: list[tuple[str, str, str]] = []
    for i in range(max(len(g) for g in groups)):
        out += [g[i] for g in groups if i < len(g)]
    return out


# ---------------------------------------------------------------- products

def _family(seed: int, f: int) -> dict:
    rng = random.Random(seed * 1_000_003 + f)
    ckey = rng.choice(sorted(cat.CATEGORIES))
    g = (f * 7919 + seed * 101) % _CODE_SPACE
    prefix = _LETTERS[g // 90 // len(_LETTERS)] + _LETTERS[g // 90 % len(_LETTERS)]
    cycle = f // _CODE_SPACE
    issues = rng.sample([i for i in cat.ISSUES if ckey in i[1]], DOCS_PER_PRODUCT - 1)
    return {
        "category": ckey,
        "brand": rng.choice(cat.BRANDS),
        "codes": [f"{prefix}-{10 + g % 90}{s}" + ("" if cycle == 0 else "ABCDEFGH"[cycle - 1]) for s in SIBLING_SUFFIXES],
        "issues": issues,
        "errors": [f"E-{rng.randrange(1000, 10000)}" for _ in issues],
        "series": rng.choice(["Aero", "Core", "Studio", "Flex", "Nova", "Prime", "Lite", "Max"]),
    }


def _product(seed: int, j: int, fam: dict) -> dict:
    rng = random.Random(seed * 7_000_003 + j)
    sib = j % 3
    specs = [(name, unit.format(rng.randint(*span))) for name, unit, span in cat.SPECS[fam["category"]]]
    return {**fam, "code": fam["codes"][sib], "sibling": sib, "specs": specs,
            "colours": rng.sample(cat.COLOURS, 2), "warranty_years": rng.choice([1, 2, 2, 3])}


def _product_docs(p: dict) -> list[tuple[str, str]]:
    noun = cat.CATEGORIES[p["category"]][0]
    brand, code = p["brand"], p["code"]
    others = [c for c in p["codes"] if c != code]
    spec_list = "; ".join(f"{k}: {v}" for k, v in p["specs"])
    docs = [(
        f"{brand} {code} {noun} — specifications",
        (f"The {brand} {code} is a {noun} in the {brand} {p['series']} range, sold in {p['colours'][0]} and "
        f"{p['colours'][1]}. Specifications of the {code}: {spec_list}. It shares accessories with the "
        f"{others[0]} and {others[1]} but not their firmware. The manufacturer warranty for the {code} is "
        f"{p['warranty_years']} years; register the serial number in the {brand} app."))]
    for (_, _, title, symptom, _, cause, fix), err in zip(p["issues"], p["errors"]):
        docs.append((
            f"{code} troubleshooting: {title} (error {err})",
            (f"Applies to the {brand} {code} {noun}. Symptom: {symptom}, and the app may report error {err}. "
            f"Error {err} on the {code} usually points to {cause}. What to do: {fix} If error {err} returns "
            f"after these steps, contact support with the serial number of your {code}; repairs within the "
            f"warranty period are free.")))
    return docs


def _static_part(n_docs: int, seed: int) -> list[tuple[str, str, str]]:
    """The non-product documents that fit: all of them, or the first half of a small KB."""
    if n_docs < MIN_DOCS:
        raise ValueError(f"support-kb needs at least {MIN_DOCS} documents, got {n_docs}; try support-kb:200 or more")
    return _static_docs(seed)[: n_docs // 2]


def iter_docs(n_docs: int = DEFAULT_DOCS, seed: int = 0) -> Iterator[Doc]:
    """The KB's documents in id order, generated lazily (a 1M-doc KB streams in constant memory)."""
    static = _static_part(n_docs, seed)
    for i, (_, title, text) in enumerate(static):
        yield Doc(_doc_id(i, n_docs), title, text)
    i, j, fam = len(static), 0, {}
    while i < n_docs:
        if j % 3 == 0:
            fam = _family(seed, j // 3)
        for title, text in _product_docs(_product(seed, j, fam)):
            if i >= n_docs:
                break
            yield Doc(_doc_id(i, n_docs), title, text)
            i += 1
        j += 1


# ---------------------------------------------------------------- queries

def _queries(n_docs: int, seed: int, n_queries: int) -> list[tuple[str, str, dict[str, int]]]:
    """(kind, query text, {doc id: gain}) for `n_queries` distinct targets."""
    static = _static_part(n_docs, seed)
    sidx = {key: i for i, (key, _, _) in enumerate(static)}
    n_products = (n_docs - len(static)) // DOCS_PER_PRODUCT
    n_families = n_products // 3
    did = lambda i: _doc_id(i, n_docs)
    pdoc = lambda j, k: did(len(static) + DOCS_PER_PRODUCT * j + k)
    rng = random.Random(f"support-kb-queries:{seed}:{n_docs}")
    regions, tiers = list(cat.REGIONS), list(cat.TIERS)
    all_cats = {**cat.CATEGORIES, **cat.POLICY_ONLY_CATEGORIES}
    out: list[tuple[str, str, dict[str, int]]] = []
    seen: set[str] = set()

    def judged(gold: str, partial: list[str], negatives: list[str]) -> dict[str, int] | None:
        if gold not in sidx:
            return None
        rel = {did(sidx[k]): 0 for k in negatives if k in sidx}
        rel.update({did(sidx[k]): 1 for k in partial if k in sidx})
        rel[did(sidx[gold])] = 2
        return rel

    def policy_query() -> tuple[str, str, dict[str, int] | None]:
        kind = rng.choice(["returns", "returns", "warranty", "shipping", "refunds", "guide"])
        region = rng.choice(regions)
        where = rng.choice(cat.REGIONS[region][1])
        if kind in ("returns", "warranty"):
            ckey = rng.choice(sorted(all_cats))
            syn = rng.choice(all_cats[ckey][2])
            if kind == "returns":
                text = rng.choice([
                    f"can I send back the {syn} I bought {rng.choice(cat.TIME_AGO)}? I'm {where}",
                    f"{where}, changed my mind about the {syn}, how long do I have to give them back",
                    f"I'm {where} and the {syn} I ordered don't fit, what's the deadline to hand them back",
                    f"return window for {syn} {where}"])
            else:
                text = rng.choice([
                    f"my {syn} broke after {rng.randint(4, 20)} months, is it still covered? I'm {where}",
                    f"{where}: the {syn} stopped working, will you fix it for free",
                    f"how long is a faulty {syn} guaranteed for {where}",
                    f"warranty length for {syn} bought {where}"])
            key = f"{kind}:{region}:{ckey}"
            negatives = [f"{kind}:{r}:{ckey}" for r in regions if r != region]
            negatives += [f"{kind}:{region}:{c}" for c in rng.sample(sorted(set(all_cats) - {ckey}), 2)]
            return "para", text, judged(key, [f"overview:{kind}"], negatives)
        if kind in ("shipping", "refunds"):
            tier = rng.choice(tiers)
            who = rng.choice(cat.TIERS[tier])
            if kind == "shipping":
                text = rng.choice([f"how quickly will my parcel turn up? I have {who}, {where}",
                                   f"{where} with {who}: do I pay for postage and when does the box arrive",
                                   f"delivery times {where} with {who}"])
            else:
                text = rng.choice([f"I sent something back and I have {who}, when do I see my money again? {where}",
                                   f"{where}, {who}: how many days until the cash for my returned item lands"])
            key = f"{kind}:{region}:{tier}"
            negatives = [f"{kind}:{region}:{t}" for t in tiers if t != tier] + [f"{kind}:{r}:{tier}" for r in regions if r != region]
            return "para", text, judged(key, [f"overview:{kind}"], negatives)
        topic, _, _, asks = rng.choice(cat.GUIDES)
        ckey = rng.choice(sorted(cat.CATEGORIES))
        text = rng.choice(asks).format(syn=rng.choice(cat.CATEGORIES[ckey][2]))
        negatives = [f"guide:{topic}:{c}" for c in cat.CATEGORIES if c != ckey]
        return "para", text, judged(f"guide:{topic}:{ckey}", [], negatives)

    def product_query(kind: str) -> tuple[str, str, dict[str, int] | None]:
        if n_families == 0:
            return kind, "", None
        j = rng.randrange(n_families * 3)
        p = _product(seed, j, _family(seed, j // 3))
        fam0 = 3 * (j // 3)
        code = p["code"]
        if kind == "code" and rng.random() < 0.3:
            field, _ = rng.choice(p["specs"])
            text = rng.choice([f"{code} specs", f"{code} {field}", f"{p['brand']} {code} datasheet"])
            rel = {pdoc(s, 0): 0 for s in range(fam0, fam0 + 3)}
            rel |= {pdoc(j, k): 1 for k in range(1, DOCS_PER_PRODUCT)} | {pdoc(j, 0): 2}
            return kind, text, rel
        k = rng.randrange(DOCS_PER_PRODUCT - 1)
        issue, err = p["issues"][k], p["errors"][k]
        if kind == "code":
            text = rng.choice([f"{code} error {err}", f"{err} on {code}", f"what does {err} mean {code}",
                               f"{code} {err}"])
        else:
            text = rng.choice([f"my {code} {rng.choice(issue[4])}", f"{code} {rng.choice(issue[4])}, what should I do",
                               f"help, the {code} {rng.choice(issue[4])}"])
        # The spec sheet helps a little; the product's articles on other faults do not.
        rel = {pdoc(s, 1 + k): 0 for s in range(fam0, fam0 + 3)} | {pdoc(j, 0): 1, pdoc(j, 1 + k): 2}
        return kind, text, rel

    def status_query() -> tuple[str, str, dict[str, int] | None]:
        keys = [k for k in sidx if k.startswith("status:")]
        key = rng.choice(keys)
        code = key.split(":", 1)[1]
        text = rng.choice([f"order status {code}", f"{code} meaning", f"my order says {code}"])
        return "code", text, judged(key, [], [])

    attempts = 0
    while len(out) < n_queries and attempts < 20 * n_queries:
        attempts += 1
        r = rng.random()
        if r < 0.4:
            kind, text, rel = policy_query()
        elif r < 0.45:
            kind, text, rel = status_query()
        elif r < 0.7:
            kind, text, rel = product_query("code")
        else:
            kind, text, rel = product_query("mixed")
        if not rel:
            continue
        gold = next(d for d, g in rel.items() if g == 2)
        if text in seen or gold in seen:  # one query per answering doc: dev never hints at test
            continue
        seen.update((text, gold))
        out.append((kind, text, rel))
    return out


def support_kb(n_docs: int = DEFAULT_DOCS, seed: int = 0) -> Dataset:
    """The generated support KB with a public "dev" split (~100 queries) and a hidden "test" split (~300)."""
    docs = list(iter_docs(n_docs, seed))
    pool = _queries(n_docs, seed, N_DEV + N_TEST)
    splits = {}
    # Every 4th query is dev, so both splits see the same mix of kinds.
    step = (N_DEV + N_TEST) // N_DEV
    parts = {"dev": [q for i, q in enumerate(pool) if i % step == 0], "test": [q for i, q in enumerate(pool) if i % step]}
    for name, part in parts.items():
        queries: dict[str, str] = {}
        qrels: Qrels = {}
        for i, (kind, text, rel) in enumerate(part):
            qid = f"q-{name}-{i:04d}-{kind}"
            queries[qid] = text
            qrels[qid] = rel
        splits[name] = Split(name, queries, qrels)
    return Dataset(
        name="support-kb" if n_docs == DEFAULT_DOCS else f"support-kb:{n_docs}",
        docs=docs,
        splits=splits,
        description=f"generated e-commerce support knowledge base, {n_docs} docs, seed {seed}",
    )
