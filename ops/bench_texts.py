"""Texts for `embedq bench` that any install has: generated, or read from the user's file.

What users send decides what a queue costs, so the generated sets are shaped like it: short
texts like search queries and product titles (8-15 MiniLM tokens), sentences of about 40 tokens,
and passages of 200-400 tokens for the mixed-length comparison. The words are ordinary English
from a fixed list, combined by a seeded generator: the same seed gives the same texts on every
machine, every text is distinct (no cache or de-duplication can flatter a figure), and nothing
is read from a network or a data folder. For figures on your own data, pass ``--input FILE``.
"""

from __future__ import annotations

import random
from pathlib import Path

from embedq.config.errors import InvalidInputError

_ADJECTIVES = ("red", "waterproof", "lightweight", "vintage", "wireless", "organic", "cheap",
               "compact", "heavy duty", "quiet", "stainless", "leather", "foldable", "smart",
               "handmade", "warm", "portable", "classic", "durable", "soft")
_NOUNS = ("running shoes", "backpack", "coffee grinder", "desk lamp", "winter jacket",
          "phone case", "garden hose", "office chair", "travel mug", "yoga mat", "bike helmet",
          "kitchen scale", "rain boots", "laptop stand", "sleeping bag", "water bottle",
          "headphones", "cutting board", "tent", "air purifier", "sofa", "wall clock")
_AUDIENCES = ("for women", "for men", "for kids", "for travel", "for small kitchens",
              "under 50 dollars", "with free shipping", "on sale", "for beginners", "near me")
_QUESTIONS = ("how do I reset my {noun} to factory settings",
              "what is the best {adjective} {noun} this year",
              "why does my {noun} stop working in the cold",
              "can I return a {noun} after thirty days",
              "where can I buy a {adjective} {noun} {audience}",
              "is a {adjective} {noun} worth the money")
_SUBJECTS = ("The committee", "Our support team", "The new model", "A small startup",
             "The city council", "Most customers", "The research group", "The warehouse",
             "A recent survey", "The delivery service")
_VERBS = ("announced", "reported", "reviewed", "compared", "delayed", "improved", "tested",
          "recommended", "shipped", "measured")
_OBJECTS = ("a faster way to process returns", "the results of its second trial",
            "several changes to the pricing of annual plans",
            "the effect of cold weather on batteries",
            "a plan to reduce waiting times at the counter",
            "an update that fixes the login problem",
            "the long term costs of the new equipment", "how often customers switch providers")
_WHEN = ("last year", "in the spring", "this quarter", "over the summer", "last week",
         "in March", "before the holidays", "this month")
_CLAUSES = ("after months of complaints from users in the northern regions",
            "although the first measurements looked better than expected",
            "because several suppliers changed their delivery schedules",
            "while the board discussed the budget for the coming year",
            "according to a statement published on Tuesday morning",
            "despite strong competition from larger companies abroad")


def _short(rng: random.Random) -> str:
    if rng.random() < 0.4:
        return rng.choice(_QUESTIONS).format(adjective=rng.choice(_ADJECTIVES),
                                             noun=rng.choice(_NOUNS),
                                             audience=rng.choice(_AUDIENCES))
    words = [rng.choice(_ADJECTIVES), rng.choice(_NOUNS)]
    if rng.random() < 0.85:
        words.append(rng.choice(_AUDIENCES))
    if rng.random() < 0.6:
        words.insert(0, rng.choice(_ADJECTIVES))
    return " ".join(words)


def _sentence(rng: random.Random) -> str:
    return (f"{rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} {rng.choice(_OBJECTS)} "
            f"{rng.choice(_CLAUSES)}, and {rng.choice(_SUBJECTS).lower()} "
            f"{rng.choice(_VERBS)} {rng.choice(_OBJECTS)} {rng.choice(_WHEN)}.")


def _passage(rng: random.Random) -> str:
    return " ".join(_sentence(rng) for _ in range(rng.randint(5, 9)))


_KINDS = {"short": _short, "long": _sentence, "passage": _passage}


def generated(kind: str, count: int, seed: int = 0) -> list[str]:
    """``count`` distinct texts of a kind (``short``, ``long`` or ``passage``)."""
    make = _KINDS[kind]
    rng = random.Random(f"{kind}-{seed}")
    texts: dict[str, None] = {}
    while len(texts) < count:
        text = make(rng)
        if text in texts:  # make it distinct the way real traffic is: a detail differs
            text = f"{text} {rng.choice(('please', 'today', 'online', 'in stock', 'reviews'))} " \
                   f"{len(texts)}"
        texts[text] = None
    return list(texts)


def read_texts(path: Path, count: int) -> list[str]:
    """The first ``count`` distinct non-empty lines of a UTF-8 file, one text a line."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"cannot read texts from {path}: {exc}") from exc
    texts = list(dict.fromkeys(line.strip() for line in lines if line.strip()))
    if len(texts) < count:
        raise InvalidInputError(f"{path} has {len(texts)} distinct non-empty lines; the bench "
                                f"needs {count} (lower --count, or give a longer file)")
    return texts[:count]
