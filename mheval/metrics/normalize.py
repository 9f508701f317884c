"""Text normalisation and edit counting for WER / CER.

Both the reference and the ASR hypothesis go through `normalize` with the item's language, so every rule below
is applied symmetrically; a rule only has to be consistent, not linguistically perfect. In order:

1. Typographic apostrophes (’ ´ ʼ) to `'`, Unicode NFKC (fullwidth ASCII and digits, halfwidth katakana), and
   combining marks re-attached to their base letter (NFKC turns a spacing dakuten ゛ into space + U+3099).
2. Chinese script folding (zh, yue): traditional → simplified with OpenCC `t2s`. The simplified direction is the
   many-to-one one (髮/發 → 发, 後/后 → 后), so two strings that differ only in script always meet, whereas `s2t`
   has to guess among several traditional characters and can split a simplified pair apart. Whisper also writes
   Mandarin mostly in simplified script. Japanese kanji are never folded (shinjitai are not simplified Chinese).
3. Numbers: digits become words in the item's language, on both sides, so "50" and "fifty" meet. Grouping and
   decimal separators follow the language (en 1,234.5; de 1.234,5; fr 1 234,5). num2words spells en, de, fr, ja
   and ko; it has no Chinese, so zh and yue use cn2an, which also reads years digit by digit (1990年 → 一九九零年)
   and `%` as 百分之. `%` becomes the language's word elsewhere. In Mandarin and Cantonese, 两 becomes 二 (cn2an
   writes 2 as 二, a speaker and Whisper say 两个) and 〇 becomes 零 (一九九〇 / 一九九零), on both sides and
   everywhere, numeric or not. Ordinals written with a suffix become words in English (5th → fifth) and French
   (1er → premier, 5e / 5ème → cinquième). Not handled: German ordinals ("5." is also a sentence end), years
   spoken as pairs in English ("nineteen
   ninety" vs 1990 → "one thousand nine hundred and ninety"), native Korean numerals (하나, 둘), amounts with cents
   ("$3.50" reads "three point five dollars", not "three dollars fifty").
3b. Currencies: a symbol becomes the language's word and moves after its amount, so "$50", "50 $" and "fifty
   dollars" meet (€ → euros / Euro / 欧元 / ユーロ / 유로, $ → dollars / Dollar / 美元 / ドル / 달러, £, ¥ / ￥ → 元 in
   Chinese and 円 in Japanese, ₩ → 원). In English and French the singular and plural word are one token
   (dollar → dollars, euro → euros), since "$1" and "one dollar" must meet too.
4. Case folding with `str.casefold` (German ß → ss, so Swiss "Strasse" matches "Straße"); accents are kept.
5. English only: a closed list of contractions expanded (don't → do not; `'s` only after pronouns and question
   words, where it cannot be a possessive), hesitation fillers dropped (um, uh, hmm; Whisper omits them), a few
   titles spelled out, and British spellings mapped to American with the table that ships with openai-whisper
   (read as a file, so the default ASR engine never imports torch).
   Whisper's full EnglishTextNormalizer is deliberately not used: it maps "oh" to "0", turns number words into
   digits (the opposite direction of every other language here) and rewrites possessives ("Smith's" → "smith is").
6. Punctuation and symbols (Unicode categories P* and S*, which cover ASCII and CJK/fullwidth punctuation such as
   ，。！？、「」…) become spaces. Combining marks (M*) are never removed: they belong to the script (French and
   German accents, Japanese dakuten); letters and modifier letters (Hangul jamo, the katakana ー) are kept too.
   In English an apostrophe is deleted ("john's" → "johns"); elsewhere it separates words (French l'homme → l homme).
7. Whitespace collapses; for character-level languages it is removed altogether.

Scoring unit (from `mheval.languages`): characters for zh, yue, ja and ko, words for en, de and fr. Korean does
separate eojeol (a word with its particles) by spaces, but its spacing rules admit variants that sound identical
(먹어 보다 / 먹어보다; compounds and auxiliary verbs may be written either way) and ASR output follows them
inconsistently, so word-level Korean WER charges pronunciation-neutral spacing as errors. Character (syllable)
level removes that noise and matches the paper's public WER ports, which score any text with Hangul by character,
so mheval's Korean numbers are comparable with the published table.

Empty reference: `error_counts` still returns counts (every hypothesis token is an insertion, reference_length 0),
but `ErrorCounts.rate` raises, because an error rate over zero reference tokens is undefined; a suite item without
spoken text is a suite error, not a score.
"""
from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from importlib.metadata import distribution, version
from pathlib import Path

import jiwer
from num2words import num2words
from opencc import OpenCC
from mheval.languages import language as language_info

# Changes whenever normalisation behaviour changes; the libraries that spell numbers and fold scripts are part of it.
# (3: currencies, ordinals in en/fr, 两/二 and 〇/零; openai-whisper's British → American table read without importing torch.)
NORMALIZER_VERSION = "3;" + ";".join(
    f"{dist}={version(dist)}" for dist in ("num2words", "cn2an", "opencc-python-reimplemented", "openai-whisper")
)


@dataclass(frozen=True)
class NumberFormat:
    group_separator: str  # thousands separator, removed when followed by groups of exactly three digits
    decimal_separator: str
    percent_word: str | None  # None where the number library reads "%" itself


NUMBER_FORMATS = {
    "en": NumberFormat(",", ".", "percent"),
    "de": NumberFormat(".", ",", "prozent"),
    "fr": NumberFormat(" ", ",", "pour cent"),
    "ja": NumberFormat(",", ".", "パーセント"),
    "ko": NumberFormat(",", ".", "퍼센트"),
    "zh": NumberFormat(",", ".", None),  # cn2an writes 50% as 百分之五十
    "yue": NumberFormat(",", ".", None),
}
CHINESE_NUMERALS = {"zh", "yue"}

ENGLISH_CONTRACTIONS = {
    "won't": "will not", "can't": "can not", "cannot": "can not", "shan't": "shall not", "ain't": "is not",
    "let's": "let us", "y'all": "you all",
}
ENGLISH_CONTRACTION_SUFFIXES = {"n't": " not", "'re": " are", "'ve": " have", "'ll": " will", "'m": " am", "'d": " would"}
# `'s` is "is" only where it cannot be a possessive.
ENGLISH_IS_HOSTS = {"it", "he", "she", "that", "what", "where", "who", "how", "there", "here", "this", "when", "why"}
ENGLISH_FILLERS = {"um", "uh", "uhm", "umm", "hmm", "hm", "mm", "mmm", "mhm", "er", "erm"}
ENGLISH_TITLES = {"mr": "mister", "mrs": "missus", "ms": "miss", "dr": "doctor", "prof": "professor"}

APOSTROPHES = re.compile(r"[\u2018\u2019\u02bc\u2032`´]")
SPACE_BEFORE_COMBINING_MARK = re.compile(r"\s+(?=[\u0300-\u036f\u3099\u309a])")
WHITESPACE = re.compile(r"\s+")


@cache
def simplified_chinese() -> OpenCC:
    return OpenCC("t2s")


CURRENCY_SYMBOLS = "$€£¥￥₩"
CURRENCY_WORDS = {  # symbol → the word spoken after the amount
    "en": {"$": "dollars", "€": "euros", "£": "pounds", "¥": "yen", "￥": "yen", "₩": "won"},
    "de": {"$": "Dollar", "€": "Euro", "£": "Pfund", "¥": "Yen", "￥": "Yen", "₩": "Won"},
    "fr": {"$": "dollars", "€": "euros", "£": "livres", "¥": "yens", "￥": "yens", "₩": "wons"},
    "ja": {"$": "ドル", "€": "ユーロ", "£": "ポンド", "¥": "円", "￥": "円", "₩": "ウォン"},
    "ko": {"$": "달러", "€": "유로", "£": "파운드", "¥": "엔", "￥": "엔", "₩": "원"},
    "zh": {"$": "美元", "€": "欧元", "£": "英镑", "¥": "元", "￥": "元", "₩": "韩元"},
    "yue": {"$": "美元", "€": "欧元", "£": "英镑", "¥": "元", "￥": "元", "₩": "韩元"},
}
CURRENCY_SINGULARS = {  # applied after case folding, word by word
    "en": {"dollar": "dollars", "euro": "euros", "pound": "pounds"},
    "fr": {"dollar": "dollars", "euro": "euros", "livre": "livres", "yen": "yens", "won": "wons"},
}
CURRENCY_BEFORE_AMOUNT = re.compile(rf"([{CURRENCY_SYMBOLS}])\s?(\d+(?:\.\d+)?)")
ORDINAL_SUFFIXES = {
    "en": re.compile(r"\b(\d+)(?:st|nd|rd|th)\b", re.IGNORECASE),
    "fr": re.compile(r"\b(\d+)(?:er|re|ère|e|ème|eme)\b", re.IGNORECASE),
}
CHINESE_NUMBER_VARIANTS = str.maketrans({"两": "二", "〇": "零"})


@cache
def british_to_american() -> dict[str, str]:
    """The British → American spelling table that ships with openai-whisper, read as a file: importing whisper
    would import torch, which the default ASR engine does not need."""
    path = distribution("openai-whisper").locate_file("whisper/normalizers/english.json")
    return json.loads(Path(path).read_text())


def canonical_numbers(text: str, fmt: NumberFormat) -> str:
    """Drop thousands separators and write decimals with '.', so that a number is one `\\d+(\\.\\d+)?` match."""
    group = re.escape(fmt.group_separator)
    text = re.sub(rf"(?<!\d)\d{{1,3}}(?:{group}\d{{3}})+(?![\d])", lambda m: re.sub(group, "", m.group()), text)
    if fmt.decimal_separator != ".":
        text = re.sub(rf"(?<=\d){re.escape(fmt.decimal_separator)}(?=\d)", ".", text)
    return text


def spell_number(match: re.Match, lang: str) -> str:
    try:
        return f" {num2words(Decimal(match.group()), lang=lang)} "
    except OverflowError:  # beyond num2words' range: read digit by digit
        return " " + " ".join(num2words(int(digit), lang=lang) for digit in match.group() if digit.isdigit()) + " "


def currencies_to_words(text: str, lang: str) -> str:
    """Currency symbols as the language's word after the amount (numbers already canonical: 1234.5)."""
    words = CURRENCY_WORDS[lang]
    text = CURRENCY_BEFORE_AMOUNT.sub(lambda m: f"{m.group(2)} {m.group(1)}", text)
    return re.sub(f"[{CURRENCY_SYMBOLS}]", lambda m: f" {words[m.group()]} ", text)


def ordinals_to_words(text: str, lang: str) -> str:
    pattern = ORDINAL_SUFFIXES.get(lang)
    if pattern is None:
        return text
    return pattern.sub(lambda m: f" {num2words(int(m.group(1)), to='ordinal', lang=lang)} ", text)


def numbers_to_words(text: str, lang: str) -> str:
    fmt = NUMBER_FORMATS[lang]
    text = currencies_to_words(ordinals_to_words(canonical_numbers(text, fmt), lang), lang)
    if lang in CHINESE_NUMERALS:
        import cn2an  # imported here: it compiles its patterns on import (0.1 s), which every CLI call would pay
        return cn2an.transform(text, "an2cn")
    text = re.sub(r"\d+(?:\.\d+)?", lambda m: spell_number(m, lang), text)
    return text.replace("%", f" {fmt.percent_word} ")


def expand_english_word(word: str) -> str:
    if word in ENGLISH_CONTRACTIONS:
        return ENGLISH_CONTRACTIONS[word]
    if word.endswith("'s") and word[:-2] in ENGLISH_IS_HOSTS:
        return word[:-2] + " is"
    for suffix, expansion in ENGLISH_CONTRACTION_SUFFIXES.items():
        if word.endswith(suffix) and len(word) > len(suffix):
            return word[: -len(suffix)] + expansion
    return word


def english_words(text: str) -> str:
    """Punctuation but apostrophes, contractions, then apostrophes, titles, fillers and spelling."""
    text = " ".join(expand_english_word(word.strip("'")) for word in strip_punctuation(text, keep="'").split())
    words = (ENGLISH_TITLES.get(word, word) for word in text.replace("'", "").split() if word not in ENGLISH_FILLERS)
    spelling = british_to_american()
    return " ".join(spelling.get(word, word) for word in words)


def strip_punctuation(text: str, keep: str = "") -> str:
    return "".join(" " if unicodedata.category(char)[0] in "PS" and char not in keep else char for char in text)


def normalize(text: str, language: str) -> str:
    """Normalised text for scoring: words separated by single spaces, or bare characters at character level."""
    lang = language_info(language)
    text = unicodedata.normalize("NFKC", APOSTROPHES.sub("'", text))  # before NFKC, which splits ´ into space + accent
    text = unicodedata.normalize("NFC", SPACE_BEFORE_COMBINING_MARK.sub("", text))
    if lang.code in CHINESE_NUMERALS:
        text = simplified_chinese().convert(text)
    text = numbers_to_words(text, lang.code).casefold()
    if lang.code in CHINESE_NUMERALS:
        text = text.translate(CHINESE_NUMBER_VARIANTS)
    text = english_words(text) if lang.code == "en" else strip_punctuation(text)
    if lang.code in CURRENCY_SINGULARS:
        text = " ".join(CURRENCY_SINGULARS[lang.code].get(word, word) for word in text.split())
    text = WHITESPACE.sub(" ", text).strip()
    return text.replace(" ", "") if lang.character_level else text


def tokens(text: str, language: str) -> list[str]:
    """The units WER counts: characters for character-level languages, words otherwise."""
    normalized = normalize(text, language)
    return list(normalized) if language_info(language).character_level else normalized.split()


@dataclass(frozen=True)
class ErrorCounts:
    substitutions: int
    deletions: int
    insertions: int
    hits: int
    reference_length: int

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    @property
    def rate(self) -> float:
        if self.reference_length == 0:
            raise ValueError("error rate is undefined for an empty reference")
        return self.errors / self.reference_length

    def __add__(self, other: ErrorCounts) -> ErrorCounts:
        """Sum over utterances; the corpus-level rate is the rate of the sum."""
        return ErrorCounts(
            self.substitutions + other.substitutions,
            self.deletions + other.deletions,
            self.insertions + other.insertions,
            self.hits + other.hits,
            self.reference_length + other.reference_length,
        )


def error_counts(reference: str, hypothesis: str, language: str) -> ErrorCounts:
    """Levenshtein alignment (jiwer) of the normalised token sequences."""
    ref, hyp = tokens(reference, language), tokens(hypothesis, language)
    if not ref:  # jiwer rejects empty references
        return ErrorCounts(0, 0, len(hyp), 0, 0)
    # Tokens contain no spaces, so joining with spaces lets jiwer's default word splitting recover them exactly.
    out = jiwer.process_words(" ".join(ref), " ".join(hyp))
    return ErrorCounts(out.substitutions, out.deletions, out.insertions, out.hits, len(ref))
