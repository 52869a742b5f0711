"""The form measures (seqgen.music.form) on hand-written tunes whose answers are known, the
corpus form distribution checkpoints keep, and the key reading --key shares (music.keys)."""

from __future__ import annotations

import pytest

from seqgen.music.form import corpus_forms, form_stats, forms_problem, read_form
from seqgen.music.keys import read_key
from seqgen.music.quality import normalise_key

# Eight different bars of a reel in D, and eight of its second part.
A = ["d2fd adfd", "g2eg bgeg", "f2df afdf", "edcB A2FA", "d2fd a2fd", "gfga bgeg", "fdec dBAF",
     "E2FD D3A"]
B = ["defg a2fa", "b2gb afdf", "gfge fdec", "dcBA Bcde", "f2af gbag", "fgaf gfed", "cdec dBAF",
     "E2FD D4"]


def tune(body: str, meter: str = "C|", key: str = "D", extra: str = "") -> str:
    return f"X:1\nT:Test\nM:{meter}\nL:1/8\n{extra}K:{key}\n{body}\n"


def bars(xs: list[str]) -> str:
    return "|".join(xs)


def test_aabb_with_repeat_signs_and_a_pickup():
    f = read_form(tune(f"A|:{bars(A)}:|\n|:{bars(B)}:|"))
    assert f is not None
    assert f.form == "AABB" and [p.bars for p in f.parts] == [8, 8] and f.aabb
    # the same two parts, not repeated: AB, not AABB
    g = read_form(tune(f"A|{bars(A)}||\n{bars(B)}|]"))
    assert g.form == "AB" and not g.aabb
    # parts of 7 bars, each repeated: the form is AABB, but not AABB of 8-bar parts
    h = read_form(tune(f"|:{bars(A[:7])}:|\n|:{bars(B[:7])}:|"))
    assert h.form == "AABB" and not h.aabb


def test_written_out_repeats_get_the_same_letter():
    f = read_form(tune(f"{bars(A)}||{bars(A)}||\n{bars(B)}||{bars(B)}|]"))
    assert f.form == "AABB" and f.aabb
    f = read_form(tune(f"{bars(A)}||{bars(B)}||\n{bars(A)}|]"))
    assert f.form == "ABA"


def test_endings_count_the_first_ending_and_repeat_the_part():
    # |: 7 bars [1 bar :|[2 bar || : one part of 8 bars, repeated
    f = read_form(tune(f"|:{bars(A[:7])}|[1 {A[7]}:|[2 D4 D4||\n|:{bars(B)}:|"))
    assert f.form == "AABB" and [p.bars for p in f.parts] == [8, 8]
    # a second ending closed by a plain barline: the next part starts after it, unmarked
    f = read_form(tune(f"|:{bars(A[:7])}|1 {A[7]}:|2 D4 D4|{bars(B)}|]"))
    assert f.form == "AAB" and [p.bars for p in f.parts] == [8, 8]
    # `::` closes one repeat and opens the next
    f = read_form(tune(f"|:{bars(A)}::{bars(B)}:|"))
    assert f.form == "AABB"


def test_part_lengths_eight_sixteen_in_two_four_and_fragments():
    two_four = tune(f"|:{bars([b for b in A + A])}:|", meter="2/4")
    assert read_form(two_four).parts[0].bars == 16
    st = form_stats([two_four, tune(f"|:{bars(A + A)}:|", meter="C|")])
    assert st.eight_bar_parts == 0.5  # 16 bars is the usual length in 2/4 only
    st = form_stats([tune(f"{bars(A[:4])}||{bars(B[:2])}||{bars(B)}|]")])
    assert st.parts == 3 and st.fragments == pytest.approx(2 / 3)
    assert st.eight_bar_parts == pytest.approx(1 / 3)


def test_a_bar_recurs_when_its_notes_and_durations_are_equal():
    # in D, F is F sharp: `^F` and `F` sound the same; `A2` is not `AA`; a grace note is no note
    f = read_form(tune("FA dA FA dA|^FA dA FA dA|AA dA FA dA|A2 dA FA dA|{g}A2 dA FA dA|]"))
    assert f.recurring == pytest.approx(4 / 5)
    # pitches as music21 sounds them: `=c` is `c` in C (music21 does not carry an accidental
    # to the next note of its bar, so neither does this reading)
    f = read_form(tune("=cc d2 d4|cc d2 d4|^cc d2 d4|]", key="C"))
    assert f.recurring == pytest.approx(2 / 3)
    f = read_form(tune(bars(A) + "|]"))
    assert f.recurring == 0.0
    st = form_stats([tune(bars(A) + "|]"), tune(bars(A[:4] * 2) + "|]")])
    assert st.no_repeated_bar == 0.5 and st.recurring == 0.5


def test_the_opening_two_bars_return_later():
    assert read_form(tune(bars(A[:4] + A[:2] + B[:2]) + "|]")).opening_returns
    # the two bars must come back together, in order
    assert not read_form(tune(bars(A[:4] + [A[1], A[0]] + B[:2]) + "|]")).opening_returns
    assert not read_form(tune(bars(A) + "|]")).opening_returns
    # a pickup is not the opening
    assert read_form(tune("A|" + bars(A[:4] + A[:2]) + "|]")).opening_returns


@pytest.mark.parametrize("key,last,tonic", [
    ("D", "d4 D4", True), ("D", "d4 A4", False),
    ("Ador", "A8", True), ("Ador", "G8", False),  # Ador's tonic is A (not G, its signature's)
    ("Bb", "B8", True),  # B in B flat major is B flat
    ("Em", "d4 [EGB]4", False), ("Em", "d4 [GBe]4", True),  # a chord: its last note
    ("G", "g4 z4", True), ("G", "c4 z4", False),  # a rest is no note
    ("HP", "A8", None),  # no key: no answer
])
def test_the_last_note_against_the_tonic_of_k(key, last, tonic):
    f = read_form(tune(f"{A[0]}|{last}|]", key=key))
    assert f.last_note_tonic is tonic


def test_the_key_in_force_at_the_last_note_counts():
    assert read_form(tune("DEFA d4|[K:G] GABc d2 G2|]")).last_note_tonic is True
    assert read_form(tune("DEFA d4|[K:G] GABc d2 D2|]")).last_note_tonic is False


def test_accidentals_are_written_ones_only():
    assert read_form(tune("D2 ^c2 d4|]")).accidental
    assert read_form(tune("D2 =c2 d4|]")).accidental
    assert not read_form(tune('"^fine"D2 c2 d4|]')).accidental  # an annotation, not a note
    assert not read_form(tune("D2 F2 d4|]")).accidental  # F sharp from the key: not written


def test_form_stats_of_no_tunes_and_of_unreadable_ones():
    st = form_stats([])
    assert st.tunes == 0 and st.aabb is None and st.recurring is None
    st = form_stats([tune(bars(A) + "|]"), "X:1\nM:C|\nL:1/8\nK:D\n(3(3(3[[[|]"])
    assert st.tunes + st.unread == 2


def test_corpus_forms_group_by_meter_and_rhythm_and_validate():
    reel = tune(f"|:{bars(A)}:|\n|:{bars(B)}:|", extra="R:Reel\n")
    jig = tune("|:" + bars(["dfd dfd"] * 8) + ":|", meter="6/8", extra="R:jig\n")
    short = tune(f"{bars(A[:4])}||{bars(B)}|]", extra="R: reel \n")
    d = corpus_forms([reel, reel, short, jig])
    assert d["version"] == 1 and d["tunes"] == 4
    # bar plans only for the forms a tune may be given (parts of one length: not AB 4,8)
    assert d["groups"][0] == {"meter": "C|", "rhythm": "reel", "tunes": 3,
                              "forms": {"AABB": {"8,8": 2}, "AB": {"4,8": 1}},
                              "plans": {"AABB 8,8": {"": 2}}}
    assert d["groups"][1] == {"meter": "6/8", "rhythm": "jig", "tunes": 1,
                              "forms": {"AA": {"8": 1}},
                              "plans": {"AA 8": {"1=0 2=0 3=0 4=0 5=0 6=0 7=0": 1}}}
    assert forms_problem(d) is None
    assert forms_problem([]) is not None
    assert forms_problem({"version": 1, "tunes": 1, "groups": [{"meter": "C"}]}) is not None
    bad = {**d, "groups": [{**d["groups"][0], "forms": {"AABB": {"8,8": -1}}}]}
    assert forms_problem(bad) is not None
    bad = {**d, "groups": [{**d["groups"][0], "plans": {"AABB 8,8": {"4=x": 1}}}]}
    assert "bar plan" in forms_problem(bad)


def test_bar_plans_name_each_bar_that_repeats_an_earlier_one():
    """A reel whose bars 5-6 repeat bars 1-2 and whose part B ends as part A does: plan
    '4=0 5=1 15=7' (bars counted from 0 over the written parts, the pickup left out), drawn for
    its form and part length."""
    from seqgen.music.form import parse_plan, plan_choices

    a = A[:4] + A[:2] + A[6:]
    b = B[:7] + [A[7]]
    reel = tune(f"A|:{bars(a)}:|\n|:{bars(b)}:|", extra="R:reel\n")
    f = read_form(reel)
    assert f.copies == ((4, 0), (5, 1), (15, 7))
    assert f.recurring == pytest.approx(6 / 16)
    d = corpus_forms([reel, reel, tune(f"|:{bars(A)}:|\n|:{bars(B)}:|", extra="R:reel\n")])
    assert d["groups"][0]["plans"]["AABB 8,8"] == {"4=0 5=1 15=7": 2, "": 1}
    # the tune that repeats no bar is counted but its plan is not drawn
    assert plan_choices(d, "C|", "reel", "AABB", 8) == {"4=0 5=1 15=7": 2}
    assert plan_choices(d, "C|", "reel", "AB", 8) == {}
    # a form no tune of the meter and rhythm has (--form): the meter's, else the corpus's
    jig = tune("|:" + bars(["dfd dfd"] * 4 + ["dfd dfd", "ABc dBA", "dfd dfd", "ABc dBA"])
               + ":|\n|:" + bars(["ABc dBA"] * 8) + ":|", meter="6/8", extra="R:jig\n")
    d = corpus_forms([reel, jig])
    assert plan_choices(d, "6/8", "slide", "AABB", 8) == {
        "1=0 2=0 3=0 4=0 6=0 7=5 8=5 9=5 10=5 11=5 12=5 13=5 14=5 15=5": 1}
    assert plan_choices(d, "3/4", "", "AABB", 8) == {
        "1=0 2=0 3=0 4=0 6=0 7=5 8=5 9=5 10=5 11=5 12=5 13=5 14=5 15=5": 1,
        "4=0 5=1 15=7": 1}
    assert parse_plan("4=0 5=1 15=7") == {4: 0, 5: 1, 15: 7} and parse_plan("") == {}
    # where the tunes of the rhythm repeat no bar, the meter's tunes that do give the plan
    plain = tune(f"|:{bars(A)}:|\n|:{bars(B)}:|", extra="R:hornpipe\n")
    d = corpus_forms([plain, reel])
    assert plan_choices(d, "C|", "hornpipe", "AABB", 8) == {"4=0 5=1 15=7": 1}
    assert plan_choices(corpus_forms([plain]), "C|", "hornpipe", "AABB", 8) == {}
    # a distribution written before plans were kept draws none
    old = {**d, "groups": [{k: v for k, v in g.items() if k != "plans"} for g in d["groups"]]}
    assert forms_problem(old) is None and plan_choices(old, "C|", "reel", "AABB", 8) == {}


def test_one_key_reading_for_key_and_the_tonic():
    assert read_key("Ador").tonic_class == 9 and read_key("Ador").name == "Ador"
    assert read_key("D Mixolydian").name == "Dmix" == normalise_key("D Mixolydian")
    assert read_key("F#m").tonic_class == 6 and read_key("Bb").tonic_class == 10
    assert read_key("E Minor").name == "Em" and read_key("G major").name == "G"
    assert read_key("HP") is None and read_key("") is None and read_key("Dxyz") is None
    # a --key argument is the key alone
    assert read_key("Ador", strict=True).name == "Ador"
    assert read_key("D Mixolydian", strict=True) is None
    assert read_key("Dm clef=treble").name == "Dm"
    assert read_key("Dm clef=treble", strict=True) is None


def test_bar_events_are_the_bars_of_the_parts_in_order():
    from seqgen.music.form import bar_events

    ev = bar_events(tune(f"A|:{bars(A)}:|\n|:{bars(B)}:|"))
    assert len(ev) == 16  # the pickup left out
    assert ev[:8] == bar_events(tune(bars(A) + "|]"))
    assert ev[0] != ev[1] and ev[0] == bar_events(tune(f"{A[0]}|{A[0]}|]"))[1]


def test_the_corpus_forms_are_cached_by_the_tunes(monkeypatch, tmp_path):
    import seqgen.music.form as form

    monkeypatch.setenv("SEQGEN_CACHE_DIR", str(tmp_path))
    tunes = [tune(f"|:{bars(A)}:|\n|:{bars(B)}:|"), tune(f"{bars(A)}||{bars(B)}|]", meter="6/8")]
    first = form.cached_corpus_forms(tunes)
    assert first == corpus_forms(tunes) and len(list(tmp_path.glob("forms-*.json"))) == 1
    monkeypatch.setattr(form, "corpus_forms", lambda ts: pytest.fail("read again"))
    assert form.cached_corpus_forms(tunes) == first  # from the cache
    (next(tmp_path.glob("forms-*.json"))).write_text("{damaged")
    monkeypatch.undo()
    monkeypatch.setenv("SEQGEN_CACHE_DIR", str(tmp_path))
    assert form.cached_corpus_forms(tunes) == first  # a damaged entry is computed again
    assert form.cached_corpus_forms(tunes[:1]) != first  # other tunes, another entry
