"""Sentences from a small fixed grammar and word list, drawn with a seeded generator.

Embedded rather than downloaded so the corpus needs no network and its text is part of the
code (and so of the generator version). The grammar aims at varied, pronounceable English
with the usual mix of function words, plosives, fricatives and vowels, not at meaning.
"""

from __future__ import annotations

import numpy as np

_DETERMINERS = ("the", "a", "every", "one", "some", "that", "this", "her", "his", "our")
_ADJECTIVES = (
    "quiet", "bright", "heavy", "small", "yellow", "careful", "sudden", "gentle", "broken",
    "distant", "warm", "narrow", "clever", "empty", "rusty", "silver", "busy", "patient",
    "frozen", "lazy", "ancient", "shiny", "hungry", "polite", "muddy", "thick", "curious",
)
_NOUNS = (
    "farmer", "kettle", "river", "teacher", "window", "garden", "pilot", "basket", "village",
    "doctor", "engine", "blanket", "market", "sailor", "ladder", "picture", "bicycle",
    "island", "student", "chimney", "orchard", "bakery", "whistle", "harbour", "mountain",
    "painter", "letter", "tractor", "puppy", "station", "jacket", "forest", "violin",
)
_VERBS = (
    "found", "carried", "painted", "watched", "followed", "dropped", "fixed", "pushed",
    "visited", "washed", "opened", "borrowed", "described", "measured", "ignored", "cleaned",
    "chased", "delivered", "repaired", "noticed", "lifted", "guarded", "sketched",
)
_PREPOSITIONS = ("near", "behind", "under", "beside", "across", "inside", "past", "above")
_ADVERBS = ("slowly", "yesterday", "again", "at dawn", "twice", "quickly", "in silence",
            "after lunch", "every morning", "without a word")
_CONNECTIVES = ("while", "because", "before", "after", "until")


def _pick(rng: np.random.Generator, words: tuple[str, ...]) -> str:
    return words[int(rng.integers(len(words)))]


def _noun_phrase(rng: np.random.Generator) -> str:
    if rng.random() < 0.6:
        return f"{_pick(rng, _DETERMINERS)} {_pick(rng, _ADJECTIVES)} {_pick(rng, _NOUNS)}"
    return f"{_pick(rng, _DETERMINERS)} {_pick(rng, _NOUNS)}"


def _clause(rng: np.random.Generator) -> str:
    clause = f"{_noun_phrase(rng)} {_pick(rng, _VERBS)} {_noun_phrase(rng)}"
    if rng.random() < 0.5:
        clause += f" {_pick(rng, _PREPOSITIONS)} {_noun_phrase(rng)}"
    if rng.random() < 0.4:
        clause += f" {_pick(rng, _ADVERBS)}"
    return clause


def sentence(rng: np.random.Generator) -> str:
    """One sentence: a clause, sometimes joined to a second one, as a question one time in
    six, so intonation varies too."""
    text = _clause(rng)
    if rng.random() < 0.3:
        text += f" {_pick(rng, _CONNECTIVES)} {_clause(rng)}"
    ending = "?" if rng.random() < 1 / 6 else "."
    return text[0].upper() + text[1:] + ending
