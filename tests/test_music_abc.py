"""ABC text handling without music21: splitting, headers, bars, final barlines, tidying."""

from seqgen.music.abc import (
    body_lines,
    count_bars,
    ends_with_barline,
    looks_like_abc,
    music_headers,
    parse_header,
    slugify,
    split_tunes,
    split_tunes_with_lines,
    text_bars,
    tidy_abc,
    tidy_tune,
    tune_stem,
)

TWO = """%abc-2.1
% a file header

X:1
T:The Enchanted Valley
T:Second title
M:6/8
L:1/8
Q:3/8=100
R:jig
K:G

GAB c2d|e3 d2B|!
"Am"GAB !trill!c2d|[K:D] B3 G3:|

X:2
T:Reel
M:C|
L:1/8
K:D % comment
|:A2FA dAFA|[1 B2GB dBGB:|[2 ABcd e4||
"""


def test_split_keeps_blank_line_after_k_and_reports_first_lines():
    tunes = split_tunes(TWO)
    assert len(tunes) == 2
    assert tunes[0].startswith("X:1") and "B3 G3:|" in tunes[0]
    assert [ln for ln, _ in split_tunes_with_lines(TWO)] == [4, 16]
    assert looks_like_abc(TWO) and not looks_like_abc("just text\nK:G\n")


def test_parse_header_fields_and_missing():
    h = parse_header(split_tunes(TWO)[0])
    assert (h.number, h.title, h.meter, h.unit_length, h.key, h.tempo) == (
        1, "The Enchanted Valley", "6/8", "1/8", "G", "3/8=100")
    assert h.titles == ["The Enchanted Valley", "Second title"]
    assert h.fields["R"] == ["jig"]
    assert h.field_lines["K"] == 8 and h.body_line == 9
    assert h.missing() == []
    h2 = parse_header(split_tunes(TWO)[1])
    assert h2.key == "D"  # the comment is not part of the value
    assert parse_header("X:3\nT:No meter\nK:G\nGAB|").missing() == ["M", "L"]
    # music before any K: ends the header
    h3 = parse_header("X:4\nT:t\nabc|def|")
    assert h3.key is None and h3.body_line == 3


def test_file_names_from_x_and_title():
    assert tune_stem(split_tunes(TWO)[0], 7) == "0001-the-enchanted-valley"
    assert tune_stem("T:Ó Cathasaigh's Reel!\nK:G\nA|", 12) == "0012-o-cathasaighs-reel"
    assert slugify(None) == "untitled" and slugify("???") == "untitled"


def test_bars_skip_chords_symbols_decorations_and_inline_fields():
    tune = split_tunes(TWO)[0]
    bars = text_bars(tune)
    assert [b.text for b in bars] == ["GAB c2d", "e3 d2B", '"Am"GAB !trill!c2d', "[K:D] B3 G3"]
    assert [b.line for b in bars] == [10, 10, 11, 11]
    assert count_bars(tune) == 4
    # first and second endings open bars; '[1' is not a chord
    assert [b.text for b in text_bars(split_tunes(TWO)[1])] == ["A2FA dAFA", "B2GB dBGB", "ABcd e4"]
    assert [ln for ln, _ in body_lines(tune)] == [10, 11]


def test_ends_with_barline():
    t1, t2 = split_tunes(TWO)
    assert ends_with_barline(t1) == (True, 11)
    assert ends_with_barline(t2) == (True, 6)
    assert ends_with_barline("X:1\nK:G\nGAB c2d|e3 d2") == (False, 3)
    assert ends_with_barline("X:1\nK:G\n") == (False, None)


def test_tidy_sampled_tune():
    sampled = ("X:5\nT:Sampled\nM:6/8\nM:3/4\nL:1/8\nK:G\n\nGAB c2d|e3 d2B|   \n\n"
               "GAB c2d|B3 G")
    out = tidy_tune(sampled, number=2)
    assert out.split("\n") == ["X:2", "T:Sampled", "M:6/8", "L:1/8", "K:G",
                               "GAB c2d|e3 d2B|", "GAB c2d|"]
    # a last line without any barline is closed rather than dropped
    assert tidy_tune("X:1\nK:D\nABcd").endswith("ABcd |]")


def test_tidy_abc_drops_junk_and_renumbers():
    text = "garbage before\nX:9\nT:a\nK:G\nGABc|\nX:9\nT:b\nK:D\nX:9\nT:c\nK:A\nAB|cd|\n"
    out = tidy_abc(text)
    tunes = split_tunes(out)
    assert [parse_header(t).number for t in tunes] == [1, 2]  # the tune without music is dropped
    assert [parse_header(t).title for t in tunes] == ["a", "c"]
    assert out.endswith("\n") and "garbage" not in out
    assert tidy_abc("no tunes here") == ""


def test_music_headers_keep_the_fields_that_shape_the_music_in_one_order():
    tune = ("X:12\nT: Cromsling\nR:hornpipe\nN:\"Collected by F. O'Neill\"\nB:O'Neill's 966\n"
            "Z:Transcribed by someone@example.com\nM:C|\nL:1/8\n% a comment\nT:Second title\n"
            "Q:1/4=120\nK:D\n|:A2FA dAFA|\nN:a note in the body stays\nB2GB dBGB:|")
    assert music_headers(tune) == (
        "X:12\nT:Cromsling\nT:Second title\nM:C|\nL:1/8\nQ:1/4=120\nR:hornpipe\nK:D\n"
        "|:A2FA dAFA|\nN:a note in the body stays\nB2GB dBGB:|")


def test_music_headers_fill_in_the_abc_default_unit_note_length():
    # ABC 2.1: no L: means 1/16 for a meter under 3/4, else 1/8 (and 1/8 without a meter)
    assert "\nL:1/16\n" in music_headers("X:1\nT:a\nM:2/4\nK:G\nAB|")
    assert "\nL:1/8\n" in music_headers("X:1\nT:a\nM:6/8\nK:G\nABc|")
    assert "\nL:1/8\n" in music_headers("X:1\nT:a\nK:G\nAB|")


def test_music_headers_keep_the_first_of_a_repeated_single_field_and_leave_odd_tunes_alone():
    assert music_headers("X:1\nM:6/8\nM:3/4\nL:1/8\nK:G\nABc|") == "X:1\nM:6/8\nL:1/8\nK:G\nABc|"
    no_key = "X:1\nT:no key line\nABC|"
    assert music_headers(no_key) == no_key
    assert music_headers(music_headers(TWO.split("\n\n")[1])) == music_headers(TWO.split("\n\n")[1])


def test_with_unit_writes_out_the_default_unit_length():
    from seqgen.music.abc import with_unit

    assert with_unit("X:1\nM:6/8\nK:D\n") == "X:1\nM:6/8\nL:1/8\nK:D\n"
    assert with_unit("X:1\nT:Polka\nM:2/4\nK:G\n") == "X:1\nT:Polka\nM:2/4\nL:1/16\nK:G\n"
    assert with_unit("X:1\nK:G\n") == "X:1\nL:1/8\nK:G\n"  # no meter: 1/8
    for kept in ("X:1\nM:6/8\nL:1/16\nK:D\n", "X:1\nM:6/8\n", "ROMEO:"):
        assert with_unit(kept) == kept  # an L: already, or no K: line
