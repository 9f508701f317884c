"""Prompt suites: declarative TOML files in `prompts/`, validated into frozen items.

One file per suite, `prompts/<name>.toml`:

    [suite]
    name = "smoke"                 # must equal the file name without `.toml`
    description = "..."
    [defaults]                     # optional; any item field except id and prompt
    seconds = 3.0
    resolution = "448x256"
    [[item]]
    id = "en-office-01"            # letters, digits, '.', '_', '-'; safe as a file name
    language = "en"                # one of mheval.languages.LANGUAGES
    seconds = 4.0                  # 0 < seconds <= 30
    resolution = "448x256"         # WIDTHxHEIGHT, even, >= 64 (see below)
    reference_image = "images/x.png"   # optional, relative to the suite file
    reference_audio = "audio/x.wav"    # optional, relative to the suite file: speech the clip must lip-sync to
                                       # (audio-conditioned generation; adapters that cannot condition on audio
                                       # ignore it)
    prompt = '''<main body>

    Dialogue:
    <Tired office worker, English>: "..."

    Background Sound:
    <...>'''

Resolution: any even size of at least 64 pixels is accepted. The MagiHuman generator rounds each side down to a
multiple of 32 (so 480x272 becomes 480x256); other adapters render the exact size. Sides must be even because
H.264 with 4:2:0 chroma cannot encode odd sizes.

Dialogue lines follow the enhanced-prompt format: `<speaker description, Language>: "line"`, where Language is the
English language name (Mandarin, Cantonese, English, ...). The format puts one space between every CJK character
("有 的 人 在"); `reference_text` removes those spaces to recover the spoken text (see `_join_cjk`).

Every problem is reported with the file, the item (1-based position and id) and the field, all problems of a file
at once, e.g.
    prompts/x.toml: item 3 ("en-02"): field "language": unknown language "english"; expected one of zh, yue, ...
"""
from __future__ import annotations

import hashlib
import json
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mheval.files import sha256_file_cached
from mheval.languages import LANGUAGES

PROMPTS_DIR = Path(__file__).resolve().parents[1] / "prompts"

MAX_SECONDS = 30.0
MIN_SIDE = 64
MAX_SIDE = 4096

SUITE_FIELDS = {"name": str, "description": str}
ITEM_FIELDS = {"id": str, "language": str, "seconds": (int, float), "resolution": str,
               "reference_image": str, "reference_audio": str, "prompt": str}
REQUIRED_ITEM_FIELDS = ("id", "language", "seconds", "resolution", "prompt")
DEFAULTABLE_FIELDS = ("language", "seconds", "resolution", "reference_image", "reference_audio")
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
RESOLUTION = re.compile(r"(\d+)x(\d+)")

DIALOGUE_HEADER = "Dialogue:"
BACKGROUND_HEADER = "Background Sound:"
# <speaker description, Language>: "line"  (straight, curly or German low-9 opening quotes)
DIALOGUE_LINE = re.compile(r'<(?P<tag>[^<>]+)>\s*:\s*["\u201c\u201d\u201e](?P<text>.*)["\u201c\u201d]')

# Scripts written without spaces between words, whose characters the format separates by single spaces:
# Han (CJK ideographs, extensions, compatibility), kana, bopomofo, CJK and full-width punctuation.
# Hangul is deliberately absent: Korean writes real spaces between words, and those must survive.
_UNSPACED = (
    "\u2e80-\u2fdf"      # CJK radicals, Kangxi radicals
    "\u3000-\u303f"      # CJK symbols and punctuation (、。「」…)
    "\u3040-\u30ff"      # hiragana, katakana (incl. ー)
    "\u3100-\u312f\u31a0-\u31bf"  # bopomofo
    "\u31f0-\u31ff"      # katakana phonetic extensions
    "\u3400-\u4dbf\u4e00-\u9fff"  # CJK unified ideographs + extension A
    "\uf900-\ufaff"      # CJK compatibility ideographs
    "\ufe30-\ufe4f"      # CJK compatibility forms
    "\uff00-\uffef"      # full-width punctuation and letters, half-width katakana
    "\U00020000-\U0003134f"  # CJK extensions B-G
)
_FORMAT_SPACE = re.compile(rf"\s+(?=[{_UNSPACED}])|(?<=[{_UNSPACED}])\s+")


class SuiteError(ValueError):
    """A suite file that cannot be loaded; `problems` lists every problem, each naming file, item and field."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


@dataclass(frozen=True)
class DialogueLine:
    speaker: str          # the character description inside <...>, before the language
    language_label: str   # the free-text language after the last comma, e.g. "Mandarin"
    text: str             # the line as written in the prompt (CJK spacing kept, doubled quotes undone)


@dataclass(frozen=True)
class SuiteItem:
    id: str
    language: str
    prompt: str
    seconds: float
    width: int
    height: int
    reference_image: Path | None
    dialogue: tuple[DialogueLine, ...]
    reference_text: str
    reference_audio: Path | None = None

    @property
    def visual_prompt(self) -> str:
        """The main body alone: what the picture should show, for text-video alignment."""
        return split_prompt(self.prompt)[0]

    def content_hash(self) -> str:
        """sha256 of what a generator sees: prompt, language, duration, size and reference image (and audio) bytes.

        The id is left out so that renaming an item keeps its cached clips. An item without reference audio hashes
        as before that field existed."""
        image = sha256_file_cached(self.reference_image) if self.reference_image else None
        fields = {"language": self.language, "prompt": self.prompt, "seconds": self.seconds,
                  "width": self.width, "height": self.height, "reference_image_sha256": image}
        if self.reference_audio:
            fields["reference_audio_sha256"] = sha256_file_cached(self.reference_audio)
        return _sha256_json(fields)


@dataclass(frozen=True)
class Suite:
    name: str
    description: str
    path: Path
    items: tuple[SuiteItem, ...]

    def content_hash(self) -> str:
        """sha256 over the suite name and each item's id and content hash, in order (not the description)."""
        return _sha256_json({"name": self.name, "items": [[item.id, item.content_hash()] for item in self.items]})

    def item(self, item_id: str) -> SuiteItem:
        for candidate in self.items:
            if candidate.id == item_id:
                return candidate
        raise KeyError(f"suite {self.name!r} has no item {item_id!r}")


def list_suites() -> list[str]:
    return sorted(path.stem for path in PROMPTS_DIR.glob("*.toml"))


def load_suite(name_or_path: str | Path) -> Suite:
    """Load `prompts/<name>.toml` for a bare suite name, or the given file for anything that looks like a path."""
    path = _resolve(name_or_path)
    shown = _display_path(path)
    raw = path.read_bytes()
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except tomllib.TOMLDecodeError as error:
        raise SuiteError([f"{shown}: TOML syntax error: {error}"]) from None
    except UnicodeDecodeError as error:
        raise SuiteError([_not_utf8(shown, raw, error)]) from None
    return _SuiteParser(path, shown).parse(data)


def suite_from_items(items: list[dict[str, Any]], name: str = "items", description: str = "",
                     defaults: dict[str, Any] | None = None, base: Path | None = None) -> Suite:
    """A suite from items given as dicts with the fields of a suite file's [[item]] (id, language, prompt, seconds,
    resolution, reference_image, reference_audio), checked by the same rules (SuiteError names each problem);
    relative reference paths are taken from `base` (default: the working directory)."""
    path = (base or Path.cwd()) / f"{name}.toml"
    data = {"suite": {"name": name, "description": description or f"{len(items)} item(s) given in Python"},
            "defaults": dict(defaults or {}), "item": list(items)}
    return _SuiteParser(path, f"items {name!r}").parse(data)


_ITEM_HEADER = re.compile(rb"^\s*\[\[\s*item\s*\]\]")
_KEY_LINE = re.compile(rb"^\s*([A-Za-z_][A-Za-z0-9_-]*)\s*=")
_ID_LINE = re.compile(rb'^\s*id\s*=\s*["\'](.*?)["\']')


def _not_utf8(shown: str, raw: bytes, error: UnicodeDecodeError) -> str:
    """Where an undecodable byte is, in the terms a person edits the file in: line, item (position and id), field."""
    lines = raw[:error.start].split(b"\n")
    line_number = len(lines)
    headers = [number for number, line in enumerate(lines) if _ITEM_HEADER.match(line)]
    where = f"line {line_number}"
    if headers:
        block = raw.split(b"\n")[headers[-1]:]
        item_id = next((match[1].decode("utf-8", "replace") for line in block if (match := _ID_LINE.match(line))),
                       None)
        where += f', item {len(headers)}' + (f' ("{item_id}")' if item_id else "")
        field = next((match[1].decode() for line in reversed(lines[headers[-1]:]) if (match := _KEY_LINE.match(line))),
                     None)
        where += f': field "{field}"' if field else ""
    bad = raw[error.start:error.end].hex(" ")
    return (f"{shown}: {where}: not UTF-8 text (byte {bad} cannot be decoded: the file was probably saved as "
            "Latin-1 or Windows-1252); save it as UTF-8")


def split_prompt(prompt: str) -> tuple[str, str | None, str | None]:
    """(main body, Dialogue block, Background Sound block); a missing block is None. Headers must be own lines."""
    sections: dict[str, list[str]] = {"body": [], DIALOGUE_HEADER: [], BACKGROUND_HEADER: []}
    seen = {"body"}
    current = "body"
    for line in prompt.splitlines():
        header = line.strip()
        if header in sections and header not in seen:
            current = header
            seen.add(header)
            continue
        sections[current].append(line)
    blocks = {key: "\n".join(lines).strip() if key in seen else None for key, lines in sections.items()}
    return blocks["body"], blocks[DIALOGUE_HEADER], blocks[BACKGROUND_HEADER]


def extract_dialogue(prompt: str) -> list[DialogueLine]:
    """Parse the Dialogue block. Raises ValueError naming the first malformed line; [] when there is no block."""
    dialogue = split_prompt(prompt)[1]
    if dialogue is None:
        return []
    written = [line.strip() for line in dialogue.splitlines() if line.strip()]
    return [_parse_dialogue_line(line, number) for number, line in enumerate(written, start=1)]


def reference_text(lines: list[DialogueLine] | tuple[DialogueLine, ...]) -> str:
    """The spoken text of all lines, space-joined, with the format's CJK spacing removed."""
    return _join_cjk(" ".join(line.text for line in lines))


def _parse_dialogue_line(line: str, number: int) -> DialogueLine:
    match = DIALOGUE_LINE.fullmatch(line)
    if match is None:
        raise ValueError(f'dialogue line {number} is not <speaker, Language>: "text": {line!r}')
    speaker, comma, label = match["tag"].rpartition(",")
    if not comma or not speaker.strip() or not label.strip():
        raise ValueError(f"dialogue line {number}: tag <{match['tag']}> needs a speaker and a language after a comma")
    text = match["text"].replace('""', '"').strip()
    if not text:
        raise ValueError(f"dialogue line {number}: empty line")
    return DialogueLine(speaker.strip(), label.strip(), text)


def _join_cjk(text: str) -> str:
    """Remove whitespace next to Han/kana/CJK punctuation; collapse other whitespace (Latin, Hangul) to one space.

    "有 的 人 在" -> "有的人在"; "我 用 iPhone 15 拍 的" -> "我用iPhone 15拍的"; Korean word spacing is untouched.
    """
    return _FORMAT_SPACE.sub("", " ".join(text.split()))


def _sha256_json(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()


def _resolve(name_or_path: str | Path) -> Path:
    text = str(name_or_path)
    if isinstance(name_or_path, Path) or text.endswith(".toml") or "/" in text or "\\" in text:
        path = Path(name_or_path)
    else:
        path = PROMPTS_DIR / f"{text}.toml"
        if not path.is_file():
            available = ", ".join(list_suites()) or "none"
            raise SuiteError([f"unknown suite {text!r}: no {_display_path(path)}; available: {available}"])
    if not path.is_file():
        raise SuiteError([f"{path}: no such suite file"])
    return path.resolve()


def _display_path(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(PROMPTS_DIR.parent))
    except ValueError:
        return str(path)


class _SuiteParser:
    """Turns parsed TOML into a Suite, collecting every problem before raising one SuiteError."""

    def __init__(self, path: Path, shown: str):
        self.path = path
        self.shown = shown
        self.problems: list[str] = []

    def problem(self, where: str, field: str | None, message: str) -> None:
        field_part = f' field "{field}":' if field else ""
        self.problems.append(f"{self.shown}: {where}:{field_part} {message}")

    def parse(self, data: dict[str, Any]) -> Suite:
        for key in data:
            if key not in ("suite", "defaults", "item"):
                self.problem("top level", key, 'unknown table; expected [suite], [defaults] and [[item]]')
        header = self.table(data, "suite", "[suite]")
        defaults = self.table(data, "defaults", "[defaults]")
        name, description = self.parse_header(header)
        defaults = self.valid_fields("[defaults]", defaults, {key: ITEM_FIELDS[key] for key in DEFAULTABLE_FIELDS})
        raw_items = data.get("item", [])
        if not isinstance(raw_items, list) or not raw_items:
            self.problem("top level", "item", "the suite needs at least one [[item]]")
            raw_items = []
        items = [self.parse_item(position, raw, defaults) for position, raw in enumerate(raw_items, start=1)]
        self.check_unique_ids(raw_items)
        if self.problems:
            raise SuiteError(self.problems)
        return Suite(name, description, self.path, tuple(items))

    def table(self, data: dict[str, Any], key: str, where: str) -> dict[str, Any]:
        value = data.get(key, {})
        if not isinstance(value, dict):
            self.problem(where, None, "must be a table")
            return {}
        return value

    def parse_header(self, header: dict[str, Any]) -> tuple[str, str]:
        self.valid_fields("[suite]", header, SUITE_FIELDS)
        name = header.get("name")
        if name is None:
            self.problem("[suite]", "name", "missing required field")
        elif isinstance(name, str) and name != self.path.stem:
            self.problem("[suite]", "name", f'"{name}" must equal the file name "{self.path.stem}"')
        description = header.get("description", "")
        return str(name), description if isinstance(description, str) else ""

    def valid_fields(self, where: str, table: dict[str, Any], schema: dict[str, type | tuple[type, ...]]) -> dict:
        """Report unknown and mistyped fields; return the others."""
        valid = {}
        for key, value in table.items():
            if key not in schema:
                self.problem(where, key, f"unknown field; expected one of {', '.join(schema)}")
            elif isinstance(value, bool) or not isinstance(value, schema[key]):
                expected = "number" if schema[key] == (int, float) else "string"
                self.problem(where, key, f"must be a {expected}, got {type(value).__name__} {value!r}")
            else:
                valid[key] = value
        return valid

    def parse_item(self, position: int, raw: Any, defaults: dict[str, Any]) -> SuiteItem | None:
        item_id = raw.get("id") if isinstance(raw, dict) else None
        where = f'item {position} ("{item_id}")' if isinstance(item_id, str) else f"item {position}"
        if not isinstance(raw, dict):
            self.problem(where, None, "must be a table")
            return None
        before = len(self.problems)
        fields = {**defaults, **self.valid_fields(where, raw, ITEM_FIELDS)}
        for key in REQUIRED_ITEM_FIELDS:
            if key not in fields and key not in raw:
                self.problem(where, key, "missing required field" + (" (and no default)" if key in DEFAULTABLE_FIELDS else ""))
        if len(self.problems) > before:
            return None
        return self.build_item(where, fields)

    def build_item(self, where: str, fields: dict[str, Any]) -> SuiteItem | None:
        before = len(self.problems)
        if not SAFE_NAME.fullmatch(fields["id"]):
            self.problem(where, "id", f'"{fields["id"]}" must be 1-100 letters, digits, ".", "_" or "-", '
                                      "starting with a letter or digit")
        language = fields["language"]
        if language not in LANGUAGES:
            self.problem(where, "language", f'unknown language "{language}"; expected one of {", ".join(LANGUAGES)}')
        seconds = float(fields["seconds"])
        if not 0 < seconds <= MAX_SECONDS:
            self.problem(where, "seconds", f"{fields['seconds']} is outside 0 < seconds <= {MAX_SECONDS:g}")
        size = self.parse_resolution(where, fields["resolution"])
        image = self.parse_reference_file(where, "reference_image", fields.get("reference_image"))
        audio = self.parse_reference_file(where, "reference_audio", fields.get("reference_audio"))
        dialogue = self.parse_dialogue(where, fields["prompt"], language)
        if len(self.problems) > before:
            return None
        width, height = size
        return SuiteItem(fields["id"], language, fields["prompt"], seconds, width, height, image,
                         tuple(dialogue), reference_text(dialogue), audio)

    def parse_resolution(self, where: str, resolution: str) -> tuple[int, int]:
        match = RESOLUTION.fullmatch(resolution.strip())
        if match is None:
            self.problem(where, "resolution", f'"{resolution}" is not WIDTHxHEIGHT, e.g. "448x256"')
            return 0, 0
        width, height = int(match[1]), int(match[2])
        if not all(MIN_SIDE <= side <= MAX_SIDE and side % 2 == 0 for side in (width, height)):
            self.problem(where, "resolution", f'"{resolution}": each side must be even and within '
                                              f"{MIN_SIDE}..{MAX_SIDE} pixels")
        return width, height

    def parse_reference_file(self, where: str, field: str, relative: str | None) -> Path | None:
        if relative is None:
            return None
        path = (self.path.parent / relative).resolve()
        if not path.is_file():
            self.problem(where, field, f'"{relative}" does not exist (looked for {path})')
        return path

    def parse_dialogue(self, where: str, prompt: str, language: str) -> list[DialogueLine]:
        if split_prompt(prompt)[1] is None:
            self.problem(where, "prompt", f'has no "{DIALOGUE_HEADER}" line starting the dialogue block')
            return []
        try:
            lines = extract_dialogue(prompt)
        except ValueError as error:
            self.problem(where, "prompt", str(error))
            return []
        names = {lang.name.casefold(): lang.code for lang in LANGUAGES.values()}
        for number, line in enumerate(lines, start=1):
            if line.language_label.casefold() not in names:
                self.problem(where, "prompt", f'dialogue line {number}: unknown language "{line.language_label}"; '
                                              f"expected one of {', '.join(lang.name for lang in LANGUAGES.values())}")
        if language in LANGUAGES and not any(names.get(line.language_label.casefold()) == language for line in lines):
            self.problem(where, "prompt", f'no dialogue line is tagged {LANGUAGES[language].name} '
                                          f'(the item\'s language "{language}")')
        return lines

    def check_unique_ids(self, raw_items: list[Any]) -> None:
        first_position: dict[str, int] = {}
        for position, raw in enumerate(raw_items, start=1):
            item_id = raw.get("id") if isinstance(raw, dict) else None
            if not isinstance(item_id, str):
                continue
            if item_id in first_position:
                self.problem(f'item {position} ("{item_id}")', "id",
                             f'duplicate id; item {first_position[item_id]} already uses "{item_id}"')
            else:
                first_position[item_id] = position
