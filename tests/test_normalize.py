"""WER/CER normaliser: every expected count below is worked out by hand in the comment above it."""
import unicodedata

import pytest

from mheval.metrics.normalize import NORMALIZER_VERSION, ErrorCounts, error_counts, normalize, tokens


def counts(reference: str, hypothesis: str, language: str) -> tuple[int, int, int, int]:
    c = error_counts(reference, hypothesis, language)
    return c.substitutions, c.deletions, c.insertions, c.reference_length


# (reference, hypothesis, language, (S, D, I, N), rate)
CASES = [
    # --- English, word level ---
    # both → "i do not know it is fifty dollars": 8 words, contraction and digits folded; 0/8
    ("I don't know, it's 50 dollars.", "i do not know it's fifty dollars", "en", (0, 0, 0, 8), 0.0),
    # case and punctuation only: "hello world" both sides; 0/2
    ("Hello, World!", "hello world", "en", (0, 0, 0, 2), 0.0),
    # ref "the color of the sky is blue" (7; colour → color), hyp "the color of sky is very blue":
    # second "the" deleted, "very" inserted → (0 + 1 + 1)/7
    ("The colour of the sky is blue.", "the color of sky is very blue", "en", (0, 1, 1, 7), 2 / 7),
    # "oh" stays a word (Whisper's English normaliser would make it 0): hyp "zero no" → 1 substitution / 2
    ("Oh no!", "0 no", "en", (1, 0, 0, 2), 1 / 2),
    # fillers dropped, "Mr." spelled out, possessive apostrophe removed: both "mister smiths dog"; 0/3
    ("Um, Mr. Smith's dog.", "mister smiths dog", "en", (0, 0, 0, 3), 0.0),
    # empty hypothesis: 3 reference words all deleted → 3/3
    ("Good morning, everyone.", "", "en", (0, 3, 0, 3), 1.0),
    # --- German, word level, accents kept ---
    # ref "schöne grüsse aus münchen" (ß → ss by case folding); hyp without umlauts differs in 3 of 4 words → 3/4
    ("Schöne Grüße aus München", "schone grusse aus munchen", "de", (3, 0, 0, 4), 3 / 4),
    # Straße and Strasse fold to "strasse"; 0/1
    ("Straße", "Strasse", "de", (0, 0, 0, 1), 0.0),
    # 21 → einundzwanzig, 3,5 → drei komma fünf: "ich habe einundzwanzig äpfel und drei komma fünf kilo" (9); 0/9
    ("Ich habe 21 Äpfel und 3,5 Kilo.", "ich habe einundzwanzig äpfel und drei komma fünf kilo", "de", (0, 0, 0, 9), 0.0),
    # 1.234 is one number in German: "eintausendzweihundertvierunddreissig euro" (2) vs hyp with 1234; 0/2
    ("1.234 Euro", "1234 Euro", "de", (0, 0, 0, 2), 0.0),
    # --- French, word level, accents kept ---
    # both "l homme a vingt et un ans" (7): typographic apostrophe, 21 → vingt et un; 0/7
    ("L'homme a vingt et un ans.", "L’homme a 21 ans", "fr", (0, 0, 0, 7), 0.0),
    # acute accent typed as apostrophe: both "je n ai pas" (4); 0/4
    ("Je n´ai pas.", "je n'ai pas", "fr", (0, 0, 0, 4), 0.0),
    # ref "c est très été" (4); hyp "c est tres ete": 2 substitutions → 2/4
    ("C'est très été !", "c'est tres ete", "fr", (2, 0, 0, 4), 2 / 4),
    # guillemets and no-break spaces are punctuation/space: "bonjour" both; 0/1
    ("« Bonjour\u00a0! »", "bonjour", "fr", (0, 0, 0, 1), 0.0),
    # 3 000 (space-grouped) → trois mille; 2,5 % → deux virgule cinq pour cent: 8 words; 0/8
    ("3 000 euros, 2,5 %", "trois mille euros deux virgule cinq pour cent", "fr", (0, 0, 0, 8), 0.0),
    # --- Japanese, character level ---
    # ref "こんにちは世界" (7 chars) after removing 、！ and spaces; 0/7
    ("こんにちは、世界！", "こんにちは 世界", "ja", (0, 0, 0, 7), 0.0),
    # halfwidth ｶﾞｷﾞ → ガギ (NFKC), spacing dakuten か゛ → が: "ガギが" (3 chars) both; 0/3
    ("ガギが", "ｶﾞｷﾞか゛", "ja", (0, 0, 0, 3), 0.0),
    # 3 → 三: "りんごが三個" (6 chars); 0/6
    ("りんごが3個", "りんごが三個", "ja", (0, 0, 0, 6), 0.0),
    # ref 今日は晴れです (7), hyp 今日は雨です (6): 晴→雨 substituted, れ deleted → 2/7
    ("今日は晴れです。", "今日は雨です", "ja", (1, 1, 0, 7), 2 / 7),
    # --- Korean, character (syllable) level ---
    # "안녕하세요저는학생입니다": 5 + 2 + 5 = 12 syllables both; 0/12
    ("안녕하세요, 저는 학생입니다.", "안녕하세요 저는 학생입니다", "ko", (0, 0, 0, 12), 0.0),
    # 50% → 오십 퍼센트: "가격이오십퍼센트올랐어요" 3 + 2 + 3 + 4 = 12 both; 0/12
    ("가격이 50% 올랐어요", "가격이 오십 퍼센트 올랐어요", "ko", (0, 0, 0, 12), 0.0),
    # spacing variants sound the same and are not errors: "먹어보다" (4) both; 0/4
    ("먹어 보다", "먹어보다", "ko", (0, 0, 0, 4), 0.0),
    # decomposed jamo (NFD) recompose under NFKC: "한국어좋아요" (6) both; 0/6
    (unicodedata.normalize("NFD", "한국어 좋아요"), "한국어 좋아요", "ko", (0, 0, 0, 6), 0.0),
    # one syllable wrong: ref "감사합니다" (5), hyp "감사함니다": 합→함 → 1/5
    ("감사합니다", "감사함니다", "ko", (1, 0, 0, 5), 1 / 5),
    # --- Mandarin, character level ---
    # spaced CJK from the prompt format: "有的人在笑" (5) both; 0/5
    ("有 的 人 在 笑", "有的人在笑", "zh", (0, 0, 0, 5), 0.0),
    # traditional → simplified: 我們的頭髮 → 我们的头发 (5); 0/5
    ("我們的頭髮", "我们的头发", "zh", (0, 0, 0, 5), 0.0),
    # fullwidth punctuation: "你好世界" (4); 0/4
    ("你好，世界！", "你好世界", "zh", (0, 0, 0, 4), 0.0),
    # 3 → 三, 1,000 → 一千: "我有三个苹果一千元" (9); 0/9
    ("我有3个苹果，1,000元", "我有三个苹果 一千元", "zh", (0, 0, 0, 9), 0.0),
    # ref 今天天气很好 (6), hyp 今天天很好啊: 气 deleted, 啊 inserted (3 substitutions would cost more) → 2/6
    ("今天天气很好。", "今天天很好啊", "zh", (0, 1, 1, 6), 2 / 6),
    # --- Cantonese, character level ---
    # traditional Cantonese vs simplified: "佢哋喺度食紧饭" (7); 0/7
    ("佢哋喺度食緊飯", "佢哋喺度食紧饭", "yue", (0, 0, 0, 7), 0.0),
    # 3個 → 三个: "我哋三个人" (5); 0/5
    ("我哋3個人", "我哋三个人", "yue", (0, 0, 0, 5), 0.0),
    # Cantonese read as Mandarin: ref 佢係我朋友 → 佢系我朋友 (5), hyp 他是我朋友: 佢→他, 系→是 → 2/5
    ("佢係我朋友", "他是我朋友", "yue", (2, 0, 0, 5), 2 / 5),
    # --- currencies: symbol and word meet, in each language's word order ---
    # "$50" → "fifty dollars"; ref "it costs fifty dollars" (4) both; 0/4
    ("It costs $50.", "it costs fifty dollars", "en", (0, 0, 0, 4), 0.0),
    # singular and plural are one token: "$1" and "one dollar" → "one dollars" (2); 0/2
    ("$1", "one dollar", "en", (0, 0, 0, 2), 0.0),
    # "€20" and "twenty euros" → "twenty euros" (2); 0/2
    ("€20", "twenty euros", "en", (0, 0, 0, 2), 0.0),
    # "50 €" and "50 Euro" → "fünfzig euro": "das kostet fünfzig euro" (4); 0/4
    ("Das kostet 50 €.", "das kostet fünfzig Euro", "de", (0, 0, 0, 4), 0.0),
    # space-grouped amount then symbol: "ça coûte trois mille euros" (5); 0/5
    ("Ça coûte 3 000 €", "ça coûte trois mille euros", "fr", (0, 0, 0, 5), 0.0),
    # ¥ before the amount is 円 after it: "百円です" (4); 0/4
    ("¥100です", "百円です", "ja", (0, 0, 0, 4), 0.0),
    # ¥50 → 五十元: "我有五十元" (5); 0/5
    ("我有¥50", "我有五十元", "zh", (0, 0, 0, 5), 0.0),
    # --- ordinals with a suffix ---
    # 5th → fifth: "the apartment on fifth street" (5); 0/5
    ("The apartment on Fifth Street.", "the apartment on 5th street", "en", (0, 0, 0, 5), 0.0),
    # 1er → premier, 3e → troisième: "le premier et le troisième" (5); 0/5
    ("Le 1er et le 3e", "le premier et le troisième", "fr", (0, 0, 0, 5), 0.0),
    # --- Mandarin number variants ---
    # 2个 (→ 二个) and 两个 meet: "我有二个苹果" (6); 0/6
    ("我有2个苹果", "我有两个苹果", "zh", (0, 0, 0, 6), 0.0),
    # 1990年 → 一九九零年, 〇 → 零: (5); 0/5
    ("1990年", "一九九〇年", "zh", (0, 0, 0, 5), 0.0),
    # traditional 兩 → 两 → 二: "二个人" (3); 0/3
    ("兩個人", "2个人", "yue", (0, 0, 0, 3), 0.0),
]


@pytest.mark.parametrize("reference, hypothesis, language, expected, rate", CASES)
def test_hand_computed_error_counts(reference, hypothesis, language, expected, rate):
    assert counts(reference, hypothesis, language) == expected
    assert error_counts(reference, hypothesis, language).rate == pytest.approx(rate)


@pytest.mark.parametrize("reference", ["", "!!! 。"])
def test_empty_reference_counts_insertions_but_has_no_rate(reference):
    c = error_counts(reference, "hello there", "en")
    assert (c.insertions, c.reference_length) == (2, 0)
    with pytest.raises(ValueError, match="empty reference"):
        c.rate


def test_character_level_tokens_have_no_spaces():
    assert tokens("有 的 人，在笑", "zh") == ["有", "的", "人", "在", "笑"]
    assert tokens("Ça va, merci", "fr") == ["ça", "va", "merci"]


def test_script_marks_survive_punctuation_removal():
    # combining accents, dakuten and the long-vowel mark belong to the script; only P*/S* characters go
    assert normalize("e\u0301te\u0301 — déjà", "fr") == "été déjà"
    assert normalize("コーヒー・ゲーム", "ja") == "コーヒーゲーム"


def test_corpus_counts_add_up():
    total = error_counts("a b c d", "a b c", "en") + error_counts("e f", "e g", "en")
    # (1 deletion + 1 substitution) / (4 + 2) reference words
    assert (total.errors, total.reference_length) == (2, 6)
    assert total.rate == pytest.approx(2 / 6)
    assert ErrorCounts(0, 0, 0, 0, 0) + total == total


def test_unknown_language_is_rejected():
    with pytest.raises(ValueError, match="unknown language"):
        normalize("hello", "xx")


def test_normaliser_does_not_import_torch():
    """The default ASR engine needs no torch; the normaliser must not drag it (or openai-whisper) in."""
    import subprocess
    import sys

    code = "import sys, mheval.metrics.normalize as n; n.normalize('colour', 'en'); print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"


def test_version_names_the_libraries_it_depends_on():
    assert NORMALIZER_VERSION.startswith("3;")
    assert "num2words=" in NORMALIZER_VERSION and "opencc" in NORMALIZER_VERSION
