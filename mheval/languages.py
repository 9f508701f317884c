"""The seven languages of the multilingual suite and what each tool calls them."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Language:
    code: str            # suite code (ISO 639-1 / 639-3 for Cantonese)
    name: str            # English name, as used in the prompt's `<speaker, Language>` tag
    espeak_voice: str    # espeak-ng voice for the puppet adapter
    whisper_code: str    # Whisper language token; Cantonese falls back to "zh" when the model lacks "yue"
    character_level: bool  # score CER instead of WER (unsegmented scripts)


LANGUAGES: dict[str, Language] = {
    lang.code: lang
    for lang in (
        Language("zh", "Mandarin", "cmn-latn-pinyin", "zh", True),
        Language("yue", "Cantonese", "yue", "yue", True),
        Language("en", "English", "en-us", "en", False),
        Language("ja", "Japanese", "ja", "ja", True),
        # Korean is scored by syllable, as in the paper's WER; why, in mheval/metrics/normalize.py.
        Language("ko", "Korean", "ko", "ko", True),
        Language("de", "German", "de", "de", False),
        Language("fr", "French", "fr-fr", "fr", False),
    )
}


def language(code: str) -> Language:
    try:
        return LANGUAGES[code]
    except KeyError:
        raise ValueError(f"unknown language {code!r}; expected one of {', '.join(LANGUAGES)}") from None
