import re
from collections import Counter
from pathlib import Path

import pytest

from mheval.languages import LANGUAGES
from mheval.suites import (
    DialogueLine, SuiteError, extract_dialogue, list_suites, load_suite, reference_text, split_prompt,
)

GOOD_PROMPT = '''A man speaks to the camera. He says, "Hello there." His voice is calm.

Dialogue:
<Calm middle-aged man, English>: "Hello there."

Background Sound:
<No prominent background sound>'''

HEADER = '[suite]\nname = "broken"\ndescription = "test"\n'


def item_toml(id="en-01", language="en", seconds="3.0", resolution='"448x256"', prompt=GOOD_PROMPT, extra=""):
    fields = [f'id = "{id}"' if id is not None else "",
              f'language = "{language}"' if language is not None else "",
              f"seconds = {seconds}" if seconds is not None else "",
              f"resolution = {resolution}" if resolution is not None else "",
              f"prompt = '''{prompt}'''" if prompt is not None else "",
              extra]
    return "[[item]]\n" + "\n".join(field for field in fields if field) + "\n"


def write_suite(tmp_path: Path, text: str, name: str = "broken") -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(text, encoding="utf-8")
    return path


def prompt_with_dialogue(*lines: str) -> str:
    return "A person talks.\n\nDialogue:\n" + "\n".join(lines) + "\n\nBackground Sound:\n<Rain>"


# ---------------------------------------------------------------------------------------------- shipped suites

def test_shipped_suites_are_listed():
    assert {"smoke", "multilingual"} <= set(list_suites())


@pytest.mark.parametrize("name", list_suites())
def test_shipped_suite_loads_and_follows_the_prompt_format(name):
    suite = load_suite(name)
    assert suite.name == name and suite.description
    cjk = re.compile(r"[\u3040-\u30ff\u3400-\u9fff]")
    for item in suite.items:
        body, dialogue, background = split_prompt(item.prompt)
        assert background and background.startswith("<") and background.endswith(">"), item.id
        assert 60 <= len(body.split()) <= 230, item.id
        for line in item.dialogue:
            assert f'"{line.text}"' in body, f"{item.id}: dialogue not woven into the main body: {line.text}"
            assert LANGUAGES[item.language].name == line.language_label, item.id
            # the format puts one space between every CJK character
            assert not re.search(rf"{cjk.pattern}{cjk.pattern}", line.text), f"{item.id}: unspaced CJK"
        assert item.reference_text and not re.search(rf"{cjk.pattern} {cjk.pattern}", item.reference_text)


def test_smoke_suite_is_short_and_covers_four_languages():
    suite = load_suite("smoke")
    assert [item.language for item in suite.items] == ["en", "de", "fr", "zh"]
    assert all(2.0 <= item.seconds <= 3.0 and (item.width, item.height) == (448, 256) for item in suite.items)
    assert suite.item("zh-office-01").reference_text == "今天的会议改到下午三点了。"


CANTONESE_PARTICLES = set("咗嘅唔喺佢乜嘢冇啲嚟咁畀吓㗎呀啦喇咋啩哋係噉嘞")


UNSPACED_LANGUAGES = {"zh", "yue", "ja"}  # scripts without spaces between words


def test_multilingual_suite_has_eight_short_lines_per_language():
    suite = load_suite("multilingual")
    counts = Counter(item.language for item in suite.items)
    assert set(counts) == set(LANGUAGES) and min(counts.values()) >= 8
    for item in suite.items:
        assert item.id.startswith(f"{item.language}-") and 2.0 <= item.seconds <= 5.0
        if item.language in UNSPACED_LANGUAGES:  # 2-5 s of speech
            assert 8 <= len(re.sub(r"[\W_]", "", item.reference_text)) <= 26, item.id
        else:
            assert 4 <= len(item.reference_text.split()) <= 15, item.id
    numbered = [item.id for item in suite.items if re.search(r"\d", item.reference_text)]
    code_switched = [item.id for item in suite.items
                     if item.language in UNSPACED_LANGUAGES and re.search(r"[A-Za-z]", item.reference_text)]
    assert len(numbered) >= 7 and len(code_switched) >= 2


def test_multilingual_scripts_are_native():
    from opencc import OpenCC

    to_simplified = OpenCC("t2s")
    for item in load_suite("multilingual").items:
        text = item.reference_text
        if item.language == "zh":
            assert to_simplified.convert(text) == text, f"{item.id}: Mandarin lines use simplified characters"
        if item.language == "yue":
            assert CANTONESE_PARTICLES & set(text), f"{item.id}: not written Cantonese"
        if item.language == "ja":
            assert re.search(r"[\u3040-\u309f]", text), f"{item.id}: no hiragana"
        if item.language == "ko":
            assert re.search(r"[\uac00-\ud7a3]{2}", text) and " " in text, f"{item.id}: Korean keeps word spacing"
        if item.language in ("en", "de", "fr"):
            assert not re.search(r"[^\x00-\x7f\u00c0-\u017f\u2019]", text), item.id


def test_load_by_path_equals_load_by_name():
    by_name = load_suite("smoke")
    by_path = load_suite(by_name.path)
    assert by_path == by_name and by_path.content_hash() == by_name.content_hash()


def test_unknown_suite_name_lists_the_available_ones():
    with pytest.raises(SuiteError, match=r"unknown suite 'nope'.*available: .*smoke"):
        load_suite("nope")


# ---------------------------------------------------------------------------------------------- validation errors

BROKEN = {
    "unknown language": (HEADER + item_toml(language="english"),
                         ['item 1 ("en-01")', 'field "language"', 'unknown language "english"', "zh, yue, en"]),
    "missing prompt": (HEADER + item_toml(prompt=None), ['item 1 ("en-01")', 'field "prompt"', "missing"]),
    "missing seconds, no default": (HEADER + item_toml(seconds=None),
                                    ['item 1 ("en-01")', 'field "seconds"', "no default"]),
    "missing id": (HEADER + item_toml(id=None), ["item 1:", 'field "id"', "missing"]),
    "zero seconds": (HEADER + item_toml(seconds="0"), ['item 1 ("en-01")', 'field "seconds"', "outside"]),
    "too many seconds": (HEADER + item_toml(seconds="45"), ['field "seconds"', "outside"]),
    "seconds as string": (HEADER + item_toml(seconds='"3"'), ['field "seconds"', "must be a number"]),
    "seconds as bool": (HEADER + item_toml(seconds="true"), ['field "seconds"', "must be a number"]),
    "resolution format": (HEADER + item_toml(resolution='"448*256"'), ['field "resolution"', "WIDTHxHEIGHT"]),
    "resolution too small": (HEADER + item_toml(resolution='"32x256"'), ['field "resolution"', "64"]),
    "resolution odd": (HEADER + item_toml(resolution='"449x256"'), ['field "resolution"', "even"]),
    "resolution as array": (HEADER + item_toml(resolution="[448, 256]"), ['field "resolution"', "must be a string"]),
    "typo in field name": (HEADER + item_toml(extra="secnds = 3"), ['item 1 ("en-01")', 'field "secnds"', "unknown field"]),
    "duplicate id": (HEADER + item_toml() + item_toml(),
                     ['item 2 ("en-01")', 'field "id"', "duplicate", "item 1"]),
    "unsafe id": (HEADER + item_toml(id="../en 01"), ['item 1 ("../en 01")', 'field "id"', "letters, digits"]),
    "missing reference image": (HEADER + item_toml(extra='reference_image = "images/nope.png"'),
                                ['item 1 ("en-01")', 'field "reference_image"', "does not exist"]),
    "no dialogue block": (HEADER + item_toml(prompt="A man says hello.\n\nBackground Sound:\n<Rain>"),
                          ['item 1 ("en-01")', 'field "prompt"', "Dialogue:"]),
    "dialogue line without quotes": (HEADER + item_toml(prompt=prompt_with_dialogue("<Old man, English>: Hello.")),
                                     ['field "prompt"', "dialogue line 1", "<speaker, Language>"]),
    "dialogue tag without language": (HEADER + item_toml(prompt=prompt_with_dialogue('<Old man>: "Hello."')),
                                      ['field "prompt"', "dialogue line 1", "language"]),
    "dialogue empty line": (HEADER + item_toml(prompt=prompt_with_dialogue('<Old man, English>: ""')),
                            ['field "prompt"', "empty"]),
    "dialogue unknown language label": (
        HEADER + item_toml(language="zh", prompt=prompt_with_dialogue('<Old man, Chinese>: "你 好"')),
        ['item 1 ("en-01")', 'field "prompt"', 'unknown language "Chinese"', "Mandarin"]),
    "dialogue in another language": (
        HEADER + item_toml(language="de", prompt=prompt_with_dialogue('<Old man, English>: "Hello."')),
        ['field "prompt"', "no dialogue line is tagged German"]),
    "second line malformed": (
        HEADER + item_toml(prompt=prompt_with_dialogue('<A, English>: "Hi."', "", '<B, English> "Hi."')),
        ['field "prompt"', "dialogue line 2"]),
    "suite name mismatch": (HEADER.replace('"broken"', '"other"') + item_toml(),
                            ["[suite]", 'field "name"', '"other"', '"broken"']),
    "suite name missing": ('[suite]\ndescription = "x"\n' + item_toml(), ["[suite]", 'field "name"', "missing"]),
    "unknown suite field": (HEADER + 'author = "me"\n' + item_toml(), ["[suite]", 'field "author"', "unknown"]),
    "unknown defaults field": (HEADER + "[defaults]\nsecond = 3\n" + item_toml(),
                               ["[defaults]", 'field "second"', "unknown"]),
    "unknown top-level table": (HEADER + "[default]\nseconds = 3\n" + item_toml(),
                                ["top level", 'field "default"', "unknown table"]),
    "no items": (HEADER, ["top level", 'field "item"', "at least one"]),
    "toml syntax error": (HEADER + "[[item]]\nid = en-01\n", ["TOML syntax error", "line 5"]),
}


@pytest.mark.parametrize("case", BROKEN, ids=list(BROKEN))
def test_validation_error_names_file_item_and_field(tmp_path, case):
    text, expected = BROKEN[case]
    path = write_suite(tmp_path, text)
    with pytest.raises(SuiteError) as caught:
        load_suite(path)
    message = str(caught.value)
    assert message.startswith(str(path) + ": ")
    for fragment in expected:
        assert fragment in message, f"{fragment!r} not in {message!r}"


def test_all_problems_of_a_file_are_reported_at_once(tmp_path):
    path = write_suite(tmp_path, HEADER + item_toml(language="english") + item_toml(id="de-01", seconds="-1"))
    with pytest.raises(SuiteError) as caught:
        load_suite(path)
    assert len(caught.value.problems) == 2
    assert 'item 1 ("en-01"): field "language"' in caught.value.problems[0]
    assert 'item 2 ("de-01"): field "seconds"' in caught.value.problems[1]


def test_defaults_fill_missing_fields_and_items_override_them(tmp_path):
    defaults = '[defaults]\nseconds = 4.5\nresolution = "512x288"\n'
    path = write_suite(tmp_path, HEADER + defaults + item_toml(seconds=None, resolution=None)
                       + item_toml(id="en-02", seconds="2", resolution='"640x360"'))
    first, second = load_suite(path).items
    assert (first.seconds, first.width, first.height) == (4.5, 512, 288)
    assert (second.seconds, second.width, second.height) == (2.0, 640, 360)


def test_reference_image_resolves_relative_to_the_suite_file(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "face.png").write_bytes(b"not really a png")
    path = write_suite(tmp_path, HEADER + item_toml(extra='reference_image = "images/face.png"'))
    assert load_suite(path).items[0].reference_image == (tmp_path / "images" / "face.png").resolve()


def test_reference_audio_resolves_relative_to_the_suite_file_and_must_exist(tmp_path):
    """Audio-conditioned (a2v) items name their speech like their reference image."""
    (tmp_path / "audio").mkdir()
    (tmp_path / "audio" / "speech.wav").write_bytes(b"not really a wav")
    path = write_suite(tmp_path, HEADER + item_toml(extra='reference_audio = "audio/speech.wav"'))
    item = load_suite(path).items[0]
    assert item.reference_audio == (tmp_path / "audio" / "speech.wav").resolve() and item.reference_image is None
    assert load_suite(write_suite(tmp_path, HEADER + item_toml())).items[0].reference_audio is None
    defaults = '[defaults]\nreference_audio = "audio/speech.wav"\n'
    assert load_suite(write_suite(tmp_path, HEADER + defaults + item_toml())).items[0].reference_audio == item.reference_audio
    with pytest.raises(SuiteError) as caught:
        load_suite(write_suite(tmp_path, HEADER + item_toml(extra='reference_audio = "audio/nope.wav"')))
    assert caught.value.problems == [f'{tmp_path / "broken.toml"}: item 1 ("en-01"): field "reference_audio": '
                                     f'"audio/nope.wav" does not exist (looked for '
                                     f'{(tmp_path / "audio" / "nope.wav").resolve()})']
    with pytest.raises(SuiteError, match='field "reference_audio": must be a string'):
        load_suite(write_suite(tmp_path, HEADER + item_toml(extra="reference_audio = 3")))


# ---------------------------------------------------------------------------------------------- dialogue extraction

def spoken(*lines: str) -> str:
    return reference_text(extract_dialogue(prompt_with_dialogue(*lines)))


def test_spaced_cjk_is_joined():
    assert spoken('<Old man, Mandarin>: "有 的 人 在 等 车 。"') == "有的人在等车。"


def test_japanese_kanji_and_kana_are_joined():
    assert spoken('<Office worker, Japanese>: "お 疲 れ 様 で す 、 今 日 は 早 く 帰 り ま す 。"') \
        == "お疲れ様です、今日は早く帰ります。"


def test_latin_words_inside_cjk_keep_their_own_spaces():
    assert spoken('<Student, Mandarin>: "我 昨 天 用 iPhone 15 Pro 拍 的 。"') == "我昨天用iPhone 15 Pro拍的。"
    assert spoken('<Clerk, Cantonese>: "你 個 Wi-Fi 密 碼 係 乜 嘢 ？"') == "你個Wi-Fi密碼係乜嘢？"


def test_korean_word_spacing_is_preserved():
    assert spoken('<Young woman, Korean>: "내일 아침 9시에 다시 전화할게요."') == "내일 아침 9시에 다시 전화할게요."


def test_multiple_lines_are_joined_with_a_space_except_between_cjk():
    assert spoken('<A, English>: "Are you coming?"', '<B, English>: "In a minute."') == "Are you coming? In a minute."
    assert spoken('<A, Mandarin>: "你 来 吗 ？"', '<B, Mandarin>: "马 上 。"') == "你来吗？马上。"


def test_curly_and_german_quotes_and_doubled_quotes():
    assert spoken("<A, English>: \u201cWe\u2019re late again.\u201d") == "We\u2019re late again."
    assert spoken("<A, German>: \u201eKommst du mit?\u201c") == "Kommst du mit?"
    assert spoken('<A, English>: "She said ""no"" twice."') == 'She said "no" twice.'


def test_speaker_description_may_contain_commas_and_whitespace_is_collapsed():
    lines = extract_dialogue(prompt_with_dialogue('  <Old man, grey beard, German> :  "Na  gut. "  '))
    assert lines == [DialogueLine("Old man, grey beard", "German", "Na  gut.")]
    assert reference_text(lines) == "Na gut."


def test_prompt_without_dialogue_has_no_lines_and_malformed_lines_raise():
    assert extract_dialogue("Just a landscape.\n\nBackground Sound:\n<Wind>") == []
    with pytest.raises(ValueError, match="dialogue line 1"):
        extract_dialogue(prompt_with_dialogue("<A, English> said hello"))


def test_visual_prompt_is_the_main_body_only():
    item = load_suite("smoke").items[0]
    assert item.visual_prompt.startswith("A man in his late forties")
    assert "Dialogue:" not in item.visual_prompt and "Background Sound:" not in item.visual_prompt
    assert item.prompt.startswith(item.visual_prompt)


# ---------------------------------------------------------------------------------------------- content hashes

def test_content_hash_is_stable_and_sensitive_to_what_the_generator_sees(tmp_path):
    def item_hash(name: str, **fields) -> str:
        return load_suite(write_suite(tmp_path, HEADER.replace('"broken"', f'"{name}"') + item_toml(**fields),
                                      name)).items[0].content_hash()

    base = item_hash("broken")
    assert re.fullmatch(r"[0-9a-f]{64}", base) and item_hash("broken") == base
    assert item_hash("renamed", id="en-renamed") == base  # the id is not part of what is generated
    assert item_hash("prompt", prompt=GOOD_PROMPT.replace("calm", "calm.")) != base
    assert item_hash("seconds", seconds="3.5") != base
    assert item_hash("size", resolution='"512x256"') != base
    (tmp_path / "a.png").write_bytes(b"a")
    with_image = item_hash("image", extra='reference_image = "a.png"')
    (tmp_path / "a.png").write_bytes(b"b")
    assert with_image != base and item_hash("image", extra='reference_image = "a.png"') != with_image
    (tmp_path / "a.wav").write_bytes(b"a")
    with_audio = item_hash("audio", extra='reference_audio = "a.wav"')
    (tmp_path / "a.wav").write_bytes(b"b")
    assert with_audio != base and item_hash("audio", extra='reference_audio = "a.wav"') != with_audio


def test_suite_hash_tracks_items(tmp_path):
    path = write_suite(tmp_path, HEADER + item_toml())
    first = load_suite(path).content_hash()
    assert load_suite(path).content_hash() == first
    path.write_text(HEADER + item_toml(prompt=GOOD_PROMPT.replace("Hello there", "Hello here")), encoding="utf-8")
    assert load_suite(path).content_hash() != first


def test_suite_item_lookup():
    suite = load_suite("smoke")
    assert suite.item("de-platform-01").language == "de"
    with pytest.raises(KeyError):
        suite.item("missing")


def test_invalid_utf8_names_the_line_item_and_field_not_a_byte_offset(tmp_path):
    """Issue 12 item 15: a suite saved as Latin-1 is reported where a person would look for the problem."""
    text = HEADER + item_toml(id="en-01") + item_toml(id="de-02", prompt=GOOD_PROMPT.replace("calm", "ruhig, schön"))
    path = tmp_path / "broken.toml"
    path.write_bytes(text.encode("latin-1"))
    line = text[:text.index("schön")].count("\n") + 1
    with pytest.raises(SuiteError) as error:
        load_suite(path)
    [problem] = error.value.problems
    assert problem.startswith(f'{path}: line {line}, item 2 ("de-02"): field "prompt": not UTF-8 text (byte f6 ')
    assert "position" not in problem and "save it as UTF-8" in problem


def test_readme_names_the_registered_metrics_and_only_those():
    """Issue 12 item 15: the README listed metrics `visual` and `clip`, which `--metrics` refuses."""
    from mheval.metrics import metric_class, metric_names

    # plug-ins other tests load live outside mheval
    shipped = {name for name in metric_names() if metric_class(name).__module__.startswith("mheval.metrics.")}
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    bullet = readme[readme.index("- **Metrics**"):]
    bullet = bullet[:bullet.index("\n- **")]
    assert set(re.findall(r"`([a-z_0-9]+)` \(", bullet)) == shipped
    for name in re.findall(r"--metric-option ([a-z_0-9]+)\.", readme):
        assert name in shipped, name
