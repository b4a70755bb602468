"""Redaction of card numbers and similar digit runs, before any transcript text is stored or sent.

Recognisers write numbers as words ("four one one one ..."): runs of three or more digit words are turned into
digits first ("oh" counts as zero between digits; "double"/"triple" repeat the next digit). Then every run of 13 to
19 digits (spaces, dashes and dots between them allowed) is replaced: "[card number]" when it passes the Luhn check
(a payment card), "[number]" otherwise (a card misheard by one digit is still a card).
"""

from __future__ import annotations

import re

DIGIT_WORDS = {"zero": "0", "oh": "0", "o": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
               "six": "6", "seven": "7", "eight": "8", "nine": "9"}
# Homophones count as digits only inside a run of real digit words.
HOMOPHONES = {"to": "2", "too": "2", "for": "4"}
REPEATS = {"double": 2, "triple": 3}
MIN_SPOKEN_RUN = 3
CARD = "[card number]"
NUMBER = "[number]"

_DIGIT_RUN = re.compile(r"(?<![\d])\d(?:[ \-.]?\d){12,18}(?![\d])")
_TOKEN = re.compile(r"\S+")


def luhn_valid(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def _digit_of(word: str, inside: bool) -> str | None:
    word = word.lower().strip(",.;:!?")
    digit = DIGIT_WORDS.get(word)
    if digit is None and inside:
        digit = HOMOPHONES.get(word)
    if word in ("oh", "o") and not inside:
        return None  # "oh" starts no number
    return digit


def spoken_digits(text: str) -> str:
    """Runs of digit words, as digits: "my card is four one one one" -> "my card is 4111"."""
    words = text.split()
    out: list[str] = []
    run: list[str] = []  # digits of the current run
    run_words: list[str] = []
    repeat = 1

    def close() -> None:
        nonlocal run, run_words
        if len(run) >= MIN_SPOKEN_RUN:
            out.append("".join(run))
        else:
            out.extend(run_words)
        run, run_words = [], []

    for word in words:
        lowered = word.lower().strip(",.;:!?")
        if lowered in REPEATS:
            repeat = REPEATS[lowered]
            run_words.append(word)
            continue
        digit = _digit_of(word, inside=bool(run) or repeat > 1)
        if digit is not None:
            run.append(digit * repeat)
            run_words.append(word)
            repeat = 1
            continue
        repeat = 1
        close()
        out.append(word)
    close()
    return " ".join(out)


def _replace(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group(0))
    return CARD if luhn_valid(digits) else NUMBER


def redact(text: str) -> str:
    """The text as it may be stored and shown: spoken digits written as digits, card-like runs replaced."""
    return _DIGIT_RUN.sub(_replace, spoken_digits(text))
