"""The ABC constraint (seqgen.music.grammar): the grammar, bar-length steering, no dead ends,
and that tunes chosen at random among the allowed characters pass the music check."""

from __future__ import annotations

import random
import re
from collections import deque

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seqgen.music.grammar import EOS_ID, KEYS, AbcConstraint, ConstrainedBatch, ConstraintError
from seqgen.tokenizer import Tokenizer

# A small vocabulary: every construct of the grammar, few characters (random walks stay cheap).
VOCAB_TEXT = ("X:1\nT:Reel o' the Bog\nM:6/8 2/4 C|\nL:1/8 1/16\nK:Dmix Am G Minor\n"
              "|:(3ABc d2>e f/g//a^b_c=d3/2|(AB)[1 {ga}Te-~f.uv z2:|[2 A,B'||C|]::\n"
              "0123456789 R N B Z S O h E F Q\n"
              '"G" "Bbmaj7/F#" "^fine" [CEG]2 # @ !trill! +roll+ \\ jig slip reel Hornpipe')
TOK = Tokenizer.build([VOCAB_TEXT])


def feed(c: AbcConstraint, text: str, lenient: bool = False):
    return c.feed_text(c.start(), text, lenient=lenient)


def allowed(c: AbcConstraint, text: str) -> str:
    return c.allowed_chars(feed(c, text))


def accepts(c: AbcConstraint, text: str, lenient: bool = False) -> bool:
    try:
        feed(c, text, lenient)
    except ConstraintError:
        return False
    return True


@pytest.fixture(scope="module")
def c():
    return AbcConstraint(TOK.itos, min_bars=2, max_bars=12)


HEAD = "X:1\nT:A\nM:2/4\nL:1/8\nK:D\n"


# ------------------------------------------------------------------------------------ header
def test_header_starts_with_x_and_orders_fields(c):
    assert allowed(c, "") == "X"
    assert set(allowed(c, "X:1\n")) == set("TMLQNBZSOCH")  # (R: only after M:)
    assert accepts(c, "X:1\nT:A\nM:2/4\nL:1/8\nK:D\n")
    assert not accepts(c, "X:1\nT:A\nK:D\n")  # K: before M: and L:
    assert not accepts(c, "X:1\nM:2/4\nM:")  # M: twice
    assert not accepts(c, "X:1\nM:7/8\n")  # not a meter of the list
    assert not accepts(c, "X:1\nL:1/3\n")
    assert not accepts(c, "X:1\nT:\n")  # an empty title
    assert not accepts(c, "X:\n")  # X: needs a number
    assert accepts(c, "X: 12\nM: 6/8\nL: 1/16\nK: G Minor\n")
    assert not accepts(c, "X:1\nT:a|b")  # free text cannot look like music
    assert not accepts(c, "X:1\nT:a%b")
    # Q: a tempo in beats per minute, once (the music headers keep it; music21 reads it)
    assert accepts(c, "X:1\nQ:80\nM:2/4\nL:1/8\nK:D\n")
    assert not accepts(c, "X:1\nQ:\n") and not accepts(c, "X:1\nQ:08")
    assert not accepts(c, "X:1\nQ:1200") and not accepts(c, "X:1\nQ:a")
    assert not accepts(c, "X:1\nQ:80\nQ:")


def test_a_fixed_key_is_the_only_one_k_may_take():
    c = AbcConstraint(TOK.itos, min_bars=2, max_bars=12, key="Dmix")
    assert allowed(c, "X:1\nM:2/4\nL:1/8\nK:") == " D"  # (one space may follow the colon)
    assert accepts(c, "X:1\nM:2/4\nL:1/8\nK:Dmix\n")
    assert not accepts(c, "X:1\nM:2/4\nL:1/8\nK:D\n") and not accepts(c, "X:1\nM:2/4\nL:1/8\nK:Am")
    assert not accepts(c, "X:1\nM:2/4\nL:1/8\nK:Dmix\nABcd |[K:G]")  # inline keys too
    with pytest.raises(ConstraintError, match="--key 'Dloc': not a key the ABC constraint writes"):
        AbcConstraint(TOK.itos, key="Dloc")
    unspellable = next(k for k in KEYS if any(ch not in TOK.stoi for ch in k))
    with pytest.raises(ConstraintError, match=r"the model's vocabulary has no '.+', so it cannot"):
        AbcConstraint(TOK.itos, key=unspellable)


def test_history_field_but_no_fermata():
    tok = Tokenizer.build([VOCAB_TEXT + "\nHistory: 1850"])
    c2 = AbcConstraint(tok.itos, min_bars=2, max_bars=12)
    assert accepts(c2, "X:1\nT:A\nH:Played in 1850.\nM:2/4\nL:1/8\nK:D\n")
    assert not accepts(c2, HEAD + "HA")  # H before a note: music21 would drop the note


def test_eos_and_body_only_after_k(c):
    s = feed(c, "X:1\nM:2/4\nL:1/8\n")
    assert not c.mask(s)[EOS_ID]
    assert "A" not in c.allowed_chars(s)


# -------------------------------------------------------------------------------------- bars
FOUR = "ABcd | ABcd | ABcd | ABcd"  # a part of 4 bars of 2/4 (MIN_PART_BARS)


def test_bar_length_under_m_and_l(c):
    # 2/4 with L:1/8: four eighth notes fill a bar
    assert "|" in allowed(c, HEAD + "ABcd")
    full = allowed(c, HEAD + "A2 Bc")
    assert not set("ABCDEFGabcdefgz") & set(full)  # a full bar takes no more notes
    assert "2" in allowed(c, HEAD + "ABc") and "4" not in allowed(c, HEAD + "ABc")
    assert allowed(c, HEAD + "ABc3") == "/"  # c3 would overfill the bar; c3/2 fits
    assert not accepts(c, HEAD + "ABcd2")
    assert accepts(c, HEAD + "A2 | ABcd |")
    assert accepts(c, HEAD + "A/B/c3 | d4 |")


def test_a_section_barline_is_no_licence_for_a_short_bar(c):
    """Issue 24: '|BGEF GBdB||(dB)BA BGBd|' in 9/8, every bar a short one before '||'. Only a
    pickup and the bar that completes it (the part's last) may be short."""
    nine = "X:1\nM:9/8\nL:1/8\nK:Ador\n"
    assert not accepts(c, nine + "BGEF GBdB||")
    assert not accepts(c, HEAD + FOUR + " | ABc ||")  # a short bar before '||'
    assert not accepts(c, HEAD + "A | ABc |")  # or anywhere but the first bar
    assert accepts(c, HEAD + "A | ABcd |")  # a pickup
    three = "ABcd | ABcd | ABcd"
    assert accepts(c, HEAD + "d | " + three + " | ABc :|")  # the last bar completes it
    assert not accepts(c, HEAD + "d | " + three + " | AB :|")  # 1 + 2 eighths: no bar
    assert accepts(c, HEAD + "d |:" + three + " | ABc :|")  # a pickup before the repeat
    assert not accepts(c, HEAD + "d ||")  # a pickup is no part
    # each part has its own pickup, completed by its last bar
    assert accepts(c, HEAD + FOUR + " ||\ncd | " + three + " | AB |]")


def test_parts_have_lengths_a_musician_writes(c):
    """Issue 24: '||' every bar or two. A part has 4, 8, 12 or 16 bars (92-95% of the parts
    of every corpus; a pickup not counted), at most 12 in a tune of at most 12 bars."""
    assert not accepts(c, HEAD + "ABcd | ABcd :|")  # a part of 2 bars
    assert not accepts(c, HEAD + "ABcd | ABcd | ABcd ||")
    assert not accepts(c, HEAD + FOUR + " | ABcd ||")  # nor of 5
    assert accepts(c, HEAD + FOUR + " :|") and accepts(c, HEAD + FOUR + " |\n" + FOUR + " ||")
    s = feed(c, HEAD + "ABcd | ABcd | ABcd |")
    assert c.allowed_chars(s)[:1] != "|" and "|" not in allowed(c, HEAD + "ABcd | ABcd | ABcd |")


def test_no_part_of_rests_only(c):
    assert not accepts(c, HEAD + FOUR + " :|\n|: z")  # a part starts with a note
    assert not accepts(c, HEAD + "z4 |")
    assert accepts(c, HEAD + "A z B z | " + "z4 | ABcd | ABcd :|")  # rests inside a part


def test_at_most_a_few_bars_and_notes_per_line(c):
    # short bars: the line ends at MAX_LINE_BARS (9); parts of 4 bars (a part has 4 or 8)
    nine = HEAD + ("A4 | " * 3 + "A4 || ") * 2 + "A4"
    assert set(allowed(c, nine + " |")) <= set("\n!|]:")  # (a line break, '|!' its mark)
    assert not accepts(c, nine + " | ")
    assert not accepts(c, nine + " | A")
    reel = "X:1\nM:C|\nL:1/8\nK:D\n" + "ABcd efga | " * 3  # 4 bars of 8 notes: a line
    assert accepts(c, reel + "ABcd efga |\n") and not accepts(c, reel + "ABcd efga | A")
    dense = "X:1\nM:C\nL:1/16\nK:D\n"  # at most MAX_BAR_NOTES (16) notes in a bar
    assert accepts(c, dense + "A/" * 14 + "c8 c |")  # 14 thirty-seconds, 2 notes fill it
    assert not accepts(c, dense + "A/" * 15)  # 15: the bar would need 2 more
    assert not accepts(c, dense + "A//")  # no note shorter than a 1/32


def test_triplets_broken_rhythm_and_graces_count_right(c):
    assert accepts(c, HEAD + "(3ABc d2 | A>B c<d |")  # (3ABc = two eighths; A>B = two
    assert not accepts(c, HEAD + "A>B2")  # the pair has one written length
    assert not accepts(c, HEAD + "(3AB2")  # so do the notes of a triplet
    assert not accepts(c, HEAD + "ABcd | (3AB|")  # no barline inside a triplet
    assert accepts(c, HEAD + "{ga}A ~B .c ud |")  # grace notes take no time
    s = feed(c, HEAD + "A2 Bc")  # 2/4 is full: no more notes
    assert "|" in c.allowed_chars(s) and "d" not in c.allowed_chars(s)


def test_broken_rhythm_only_where_abc2midi_can_play_it(c):
    """abc2midi: "Cannot apply broken rhythm. Notes not equal durations"."""
    assert accepts(c, HEAD + "A>B c<d |")
    assert not accepts(c, HEAD + "Az>A")  # not after a rest
    assert not accepts(c, HEAD + "A>z")  # nor into one
    assert not accepts(c, HEAD + ".A>B")  # nor after a staccato note
    assert not accepts(c, HEAD + "(3ABc>d")  # nor after a triplet
    assert not accepts(c, HEAD + "A>B>c")  # one pair at a time
    assert not accepts(c, HEAD + "A3/2>B3/2")  # nor a dotted note (abcm2ps: too much dotted)
    hornpipe = "X:1\nM:2/4\nL:1/8\nR:Hornpipe\nK:D\n"  # abc2midi pairs the eighths itself
    assert accepts(c, hornpipe + "A>B c>d |") and not accepts(c, hornpipe + "A B>c")
    assert not accepts(c, hornpipe + ".A")  # no staccato in a hornpipe


# ------------------------------------------------------------------------- ties and pitches
def test_a_tie_joins_two_notes_of_one_pitch(c):
    """abc2midi "Could not find note to be tied", abcm2ps "Bad tie"."""
    assert accepts(c, HEAD + "ABc d- | d4 |") and accepts(c, HEAD + "A2- A B |")
    assert accepts(c, HEAD + "ABc ^d- | ^d4 |") and accepts(c, HEAD + "ABc d'- | d'4 |")
    assert not accepts(c, HEAD + "ABc d- | c")  # another letter
    assert not accepts(c, HEAD + "ABc d- | d'")  # another octave
    assert not accepts(c, HEAD + "ABc ^d- | d")  # the accidental written again
    assert not accepts(c, HEAD + "ABc d- | ^d") and not accepts(c, HEAD + "Az-")  # not a rest
    assert not accepts(c, HEAD + "AB A- z") and not accepts(c, HEAD + "AB A- [CE]")
    assert not accepts(c, HEAD + "AB [CE]-")  # nor from a chord
    assert not accepts(c, HEAD + "ABc d- |]") and not accepts(c, HEAD + "ABc d- ||")
    assert not accepts(c, HEAD + "AB .c-") and not accepts(c, HEAD + "A(Bc)-")
    # an accidental on the letter earlier in the bar: abc2midi applies it to every octave
    assert not accepts(c, HEAD + "=c B C- |") and accepts(c, HEAD + "=c B C- C |")


def test_octave_marks_as_abc2midi_reads_them(c):
    """"'" after a lower-case letter, "," after an upper-case one: "Bad pitch specifier"."""
    assert accepts(c, HEAD + "c'' C,, A, a' |")
    assert not accepts(c, HEAD + "c,") and not accepts(c, HEAD + "C'")
    assert not accepts(c, HEAD + "A',") and not accepts(c, HEAD + "[CE,c,")


def test_slurs_ties_and_endings(c):
    assert accepts(c, HEAD + "(AB) c-c | d4 | ABcd | ABcd :|")
    assert not accepts(c, HEAD + "(AB c d|")  # a slur closes within its bar
    # no '::': music21 loses every note of 'zB::ABcd|ABcd|ABcd|]'
    assert not accepts(c, HEAD + FOUR + "::") and accepts(c, HEAD + FOUR + ":|")


# ----------------------------------------------------------------------- repeats and endings
def test_repeats_are_balanced(c):
    """abc2midi "found another |: after a |:", "Missing :| at end of tune"; music21
    "badly formed repeats"."""
    assert accepts(c, HEAD + "|:" + FOUR + ":|\n|:" + FOUR + ":|")
    assert accepts(c, HEAD + FOUR + ":|\n" + FOUR + ":|")  # ':|' repeats from the part's start
    assert not accepts(c, HEAD + "|:" + FOUR + "|\n|:")  # another '|:' before ':|'
    assert not accepts(c, HEAD + "|:" + FOUR + "||") and not accepts(c, HEAD + "|:" + FOUR + "|]")
    assert not c.mask(feed(c, HEAD + "|:" + FOUR + "|\n"))[EOS_ID]  # no end in a repeat


def test_a_line_starting_with_a_plain_barline(c):
    """O'Neill starts 2,413 lines with '| ': the barline closing a bar begun on a line that
    ends in a continuation '\\'. After a line that ends at a barline only '|:' may start one
    (so a plain '|' there is refused, not turned into '|:')."""
    assert accepts(c, HEAD + "d \\\n| ABcd | ABcd | ABcd | ABc :|")
    assert allowed(c, HEAD + FOUR + " ||\n|") == ":"
    assert not accepts(c, HEAD + FOUR + " |\n|")  # (a repeat does not start inside a part)
    assert "|" not in allowed(c, HEAD + "|:ABcd |\n")  # a repeat is open: no second '|:'
    assert not accepts(c, HEAD + "ABcd |\\\n|")  # ('|' then '\\' then '|': two barlines)


def test_endings_in_order_once_each_inside_a_repeat(c):
    """abc2midi "Need || |: :| or :: to mark end of variant ending", "found [1 or like before
    |:", "Missing :| at end of tune"; music21 "badly formed repeats"."""
    body = "ABcd | ABcd | ABcd |"
    assert accepts(c, HEAD + "|:" + body + "[1 ABcd :|[2 ABcd ||")
    assert accepts(c, HEAD + body + "1 ABcd :|2 ABcd ||\n" + FOUR + " |]")  # '|1', ':|2'
    assert accepts(c, HEAD + body + "[1 ABcd :|\n[2 ABcd |:" + FOUR + ":|")
    assert not accepts(c, HEAD + body + "[1 ABcd ||")  # a first ending ends with ':|'
    assert not accepts(c, HEAD + body + "[1 ABcd :|[1")  # once, in order
    assert not accepts(c, HEAD + body + "[2")  # no second ending without a first
    assert not accepts(c, HEAD + body + "[1 ABcd :|[2 ABcd :|")  # a chain of '[2'
    assert not accepts(c, HEAD + body + "[1 ABcd :|[2 ABcd | ABcd :|")
    assert not accepts(c, HEAD + body + "[1 ABcd :| ABcd")  # '[2' follows at once
    assert not accepts(c, HEAD + "|:[1")  # after a bar of the repeat
    assert not accepts(c, HEAD + FOUR + ":|" + body + "[1")  # after ':|', only with '|:'
    assert accepts(c, HEAD + FOUR + ":|\n|:" + body + "[1 ABcd :|[2 ABcd ||")


def test_a_second_ending_is_no_longer_than_the_first(c):
    """Issue 24: 'endings in order, once each'; a second ending that runs on past the first's
    length is a new part written as an ending."""
    body = "|:ABcd | ABcd |"
    assert accepts(c, HEAD + body + "[1 ABcd | ABcd :|[2 ABcd | ABcd ||")
    assert accepts(c, HEAD + body + "[1 ABcd | ABcd :|[2 ABcd ||")  # shorter is fine
    assert not accepts(c, HEAD + body + "[1 ABcd | ABcd :|[2 ABcd | ABcd | ABcd ||")
    assert not accepts(c, HEAD + "|:ABcd | ABcd | ABcd |[1 ABcd :|[2 ABcd | ABcd ||")


def test_a_tune_has_two_or_three_parts():
    """Issue 24: 83-94% of the corpora's tunes have 2 or 3 parts; a model let to end at any
    section barline wrote a part per bar or two."""
    c4 = AbcConstraint(TOK.itos, min_bars=2, max_bars=40)
    part = FOUR + " ||\n"
    assert not c4.mask(feed(c4, HEAD + part))[EOS_ID]  # one part: no end yet
    assert c4.mask(feed(c4, HEAD + part * 2))[EOS_ID]
    s = feed(c4, HEAD + part * 3)  # three parts: the tune is over
    assert c4.mask(s)[EOS_ID] and not set(c4.allowed_chars(s)) & set("ABCDEFGabcdefgz")


# ------------------------------------------------------------------------- quoted, marks
def test_chord_symbols_and_annotations_take_no_time(c):
    assert accepts(c, HEAD + '"G"AB "D7"cd | "Bbm7/F#"A2 "Edim"B2 |')
    assert accepts(c, HEAD + '">"A "^fine"B ~c"Am"d |')  # annotations ('>' as O'Neill writes)
    s = feed(c, HEAD + '"G"A2 Bc')  # the symbol took no time: the bar is full
    assert "|" in c.allowed_chars(s) and "d" not in c.allowed_chars(s)
    assert not accepts(c, HEAD + '"H"A')  # not a chord root
    assert not accepts(c, HEAD + '"Gx')  # not a chord kind
    assert not accepts(c, HEAD + '"G"|')  # a symbol belongs to the note after it
    assert not accepts(c, HEAD + '"G""A"B')  # one symbol per note
    assert not accepts(c, HEAD + '~"G"A')  # a symbol comes before decorations
    assert accepts(c, HEAD + '"G"~A') and accepts(c, HEAD + '.[CE]')
    assert not accepts(c, HEAD + '"G"~[CE]')  # music21 would read this '~' as a note
    assert not accepts(c, HEAD + '"^' + "a" * 11)  # annotations are short
    assert allowed(c, HEAD + '"Gm')[0] == '"' and "/" in allowed(c, HEAD + '"Gm')


def test_quoted_text_is_a_chord_or_an_annotation(c):
    """abc2midi reads other quoted text as a chord symbol: "Unrecognized chord name ".C."",
    "Guitar chord does not start with A-G"; abcm2ps refuses '@' ("Error in annotation");
    music21 reads ',' and '!' in an annotation as music."""
    assert not accepts(c, HEAD + '"D.C."') and not accepts(c, HEAD + '"nd"')
    assert accepts(c, HEAD + '"^D.C."ABcd |') and accepts(c, HEAD + '"_Fine"ABcd |')
    assert not accepts(c, HEAD + '"@x"') and not accepts(c, HEAD + '"^x,y"')
    assert not accepts(c, HEAD + '"^x!"')


def test_decorations_and_line_break_marks(c):
    """'!trill!' decorations (the ones abcm2ps defines), irish.abc's '|!' line breaks; no
    '+trill+' (music21 reads its letters as notes)."""
    assert accepts(c, HEAD + "!trill!A !4!B c!fermata!d |")
    assert not accepts(c, HEAD + "!sf!") and not accepts(c, HEAD + "+trill+")
    assert not accepts(c, HEAD + "~[CE]") and not accepts(c, HEAD + "!trill![CE]")  # abc2midi
    assert not accepts(c, HEAD + "ABcd | ~z")  # nor on a rest
    assert accepts(c, HEAD + FOUR + ":|!\n" + FOUR + ":|!\n")  # irish.abc's line ends
    assert not accepts(c, HEAD + FOUR + ":|!\n" + FOUR + ":|\n")  # one way of ending lines
    assert not accepts(c, HEAD + "ABcd |!\nAB !trill!c")  # music21 pairs the two '!'


def test_inline_fields_change_the_meter_from_their_bar_on(c):
    three = "[M:3/4]ABcdef | ABcdef | ABcdef | ABcdef |"
    assert accepts(c, HEAD + FOUR + " ||\n" + three + "|\n[M:2/4] ABcd |")
    s = feed(c, HEAD + FOUR + " ||\n[M:3/4]ABcdef | ABcd")  # 4 eighths do not fill 3/4
    assert not c.mask(s)[EOS_ID] and "|" not in c.allowed_chars(s)
    assert not accepts(c, HEAD + "ABcd |[M:3/4]")  # a new meter where a part starts
    assert accepts(c, HEAD + "ABcd |[L:1/16]ABcdABcd |")  # a new unit: sixteenths
    assert not accepts(c, HEAD + "ABcd |[L:1/16]ABcdABcdA")  # the bar is full
    assert accepts(c, HEAD + "[K:G]ABcd | [CE]2 AB |[K:Am] ABcd |")
    assert not accepts(c, HEAD + "AB[M:3/4]")  # only at the start of a bar
    assert not accepts(c, HEAD + FOUR + "||\n[M:7/8]")  # values as in the header
    assert not accepts(c, HEAD + "ABcd |[X:1]") and not accepts(c, HEAD + "ABcd |[K:G]\n")
    assert not accepts(c, HEAD + "ABcd |[K:G][K:D]")  # one of each
    assert accepts(c, "X:1\nK:D\nABcd |[K:G]ABcd |", lenient=True)  # [K:] without M:


def test_tune_ends_only_after_a_section_barline(c):
    s = feed(c, HEAD + "ABcd |")
    assert not c.mask(s)[EOS_ID]  # min_bars = 2, and a part is open
    assert not c.mask(feed(c, HEAD + FOUR + " |\n"))[EOS_ID]  # a plain barline ends no part
    two = HEAD + FOUR + " ||\n" + FOUR  # a tune has 2 or 3 parts (issue 24)
    assert not c.mask(feed(c, HEAD + FOUR + " ||\n"))[EOS_ID]  # one part
    assert not accepts(c, HEAD + FOUR + " |]")
    assert c.mask(feed(c, two + " |]"))[EOS_ID]
    assert c.mask(feed(c, two + " ||\n"))[EOS_ID]
    assert c.mask(feed(c, two + " :|"))[EOS_ID]
    s = feed(c, HEAD + FOUR + " |:")
    assert not c.mask(s)[EOS_ID]  # an opening repeat is no end
    assert c.allowed_chars(feed(c, two + " |]")) == "\x00\n"  # |] is the end ('\n' breaks)


def test_max_bars_forces_the_end():
    c2 = AbcConstraint(TOK.itos, min_bars=1, max_bars=2)
    s = feed(c2, HEAD + "ABcd | ABcd |]")
    assert c2.allowed_chars(s) == "\x00\n!"
    assert c2.allowed_chars(feed(c2, HEAD + "ABcd | ABcd |]\n")) == "\x00"
    c3 = AbcConstraint(TOK.itos, min_bars=2, max_bars=9)  # a part needs 4 bars: no third
    assert not c3.mask(feed(c3, HEAD + FOUR + " ||\n" + FOUR + " |"))[EOS_ID]
    assert "A" not in allowed(c3, HEAD + FOUR + " ||\n" + FOUR + " ||")


def test_a_line_never_starts_like_a_header_field(c):
    assert not accepts(c, HEAD + "ABcd |\nd:|")
    assert accepts(c, HEAD + "ABcd |\nd2 AB | ABcd | ABcd :|")


def test_r_field_fits_the_meter(c):
    """Issue 24: R:Reel in 9/8. R: comes after M: and takes a rhythm the corpora write under
    that meter (abc2midi also refuses R:Hornpipe outside 2/4 and 4/4)."""
    assert accepts(c, "X:1\nM:9/8\nR:slip jig\nL:1/8\nK:D\n")
    assert not accepts(c, "X:1\nM:9/8\nR:reel")
    assert accepts(c, "X:1\nM:C|\nR:reel\nL:1/8\nK:D\n")
    assert not accepts(c, "X:1\nM:C|\nR:Hornpipe") and accepts(c, "X:1\nM:2/4\nR:Hornpipe\n")
    assert not accepts(c, "X:1\nR:")  # before M:
    assert accepts(c, "X:1\nR:anything\nM:9/8\nK:D\n", lenient=True)  # a prompt: any


def test_prompt_is_read_leniently_and_body_strictly(c):
    s = feed(c, "X:1\nM:6/8\nK:D\n", lenient=True)  # no L: (ABC's default 1/8 applies)
    # 6/8 is 3/4 of a whole note: 144 ticks; a quarter of the unit 1/8: 6 ticks
    assert s.phase == 1 and s.bar_ticks == 144 and s.quarter_unit_ticks == 6
    s = feed(c, "X:1\nM:6/8\nL:1/8\nK:D\n|:ABc", lenient=True)
    assert "d" in c.allowed_chars(s)
    with pytest.raises(ConstraintError, match="line 4"):
        feed(c, "X:1\nM:6/8\nK:D\nAB]c", lenient=True)
    # a prompt ending in a header line the strict grammar cannot finish still goes on
    s = feed(c, "X:1\nM:5/", lenient=True)
    assert c.mask(s).any()


def test_vocabulary_without_abc_characters_is_refused():
    with pytest.raises(ConstraintError, match="lacks characters"):
        AbcConstraint(Tokenizer.build(["hello world"]).itos)


def test_batch_masks_and_streams():
    c2 = AbcConstraint(TOK.itos, min_bars=1, max_bars=4)
    b = ConstrainedBatch(c2, 3, prompt="X:1\nM:2/4\nL:1/8\nK:D\n")
    m = b.masks()
    assert m.shape == (3, TOK.vocab_size) and (m == m[0]).all()
    a, x = TOK.stoi["A"], TOK.stoi["X"]
    b.advance([a, a, x])  # 'X' in the body is refused: that stream switches off
    m = b.masks()
    assert m[2].all() and not m[0][EOS_ID] and b.states[2] is None


# --------------------------------------------------------------------- no dead ends (search)
def test_every_reachable_state_can_go_on():
    """Breadth-first over the grammar's states from a body start (small meters, few bars): every
    state reached has an allowed character or <eos>."""
    c2 = _walker()
    seen = set()
    for head in ("X:1\nM:6/8\nL:1/8\nK:D\n", "X:1\nM:2/4\nL:1/16\nK:Am\n"):
        start = feed(c2, head)
        todo = deque([start])
        while todo and len(seen) < 1500 * (1 + (head[6] == "2")):
            s = todo.popleft()
            if s in seen:
                continue
            seen.add(s)
            m = c2.mask(s)
            ids = [i for i in range(1, len(m)) if m[i]]
            assert ids or m[EOS_ID], s
            assert (c2.advance(s, EOS_ID) is not None) == bool(m[EOS_ID])
            for i in range(1, len(m)):  # the (shared) mask says exactly which moves exist
                nxt = c2.advance(s, i)
                assert (nxt is not None) == bool(m[i]), (s, TOK.itos[i])
                if nxt is not None:
                    todo.append(nxt)
    assert len(seen) >= 3000


# ------------------------------------------------------------------------------ random tunes
def random_tune(c: AbcConstraint, rng: random.Random, prompt: str = "") -> str:
    """Characters chosen at random among the allowed ones (preferring to end header lines and
    the tune, so that tunes stay short) until <eos>."""
    s = c.feed_text(c.start(), prompt, lenient=True)
    out = []
    for _ in range(5000):
        m = c.mask(s)
        ids = [i for i in range(len(m)) if m[i]]
        assert c._viable(s), "".join(out)
        if m[EOS_ID] and rng.random() < 0.3:
            return prompt + "".join(out)
        nl = TOK.stoi["\n"]
        if s.phase == 0 and m[nl] and rng.random() < 0.3:
            i = nl
        else:
            i = rng.choice([j for j in ids if j != EOS_ID] or ids)
        if i == EOS_ID:
            return prompt + "".join(out)
        out.append(TOK.itos[i])
        s = c.advance(s, i)
    raise AssertionError("no end after 5000 characters: " + "".join(out))


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_random_walks_always_end_well_formed(seed):
    from seqgen.music.abc import ends_with_barline, parse_header, text_bars

    c2 = _walker()
    tune = random_tune(c2, random.Random(seed))
    h = parse_header(tune)
    assert not h.missing("XMLK")
    assert ends_with_barline(tune)[0]
    assert 2 <= sum(b.has_notes for b in text_bars(tune)) <= 8
    # the tune read back through the constraint is accepted to the end
    s = feed(c2, tune)
    assert c2.mask(s)[EOS_ID]


@pytest.mark.parametrize("seed,bars", [(s, (3, 6)) for s in range(6)]
                         + [(s, (8, 30)) for s in range(4)])
def test_the_mask_allows_exactly_what_advance_accepts(seed, bars):
    """Masks are cached per class of states (`_sig`); a class that mixes states the grammar
    treats differently would forbid characters the grammar allows, or allow ones it refuses.
    Checked on every state of random walks, with few bars so that both bar limits are reached,
    and with enough that parts of 8 bars and their classes of bar counts come up."""
    c = AbcConstraint(TOK.itos, min_bars=bars[0], max_bars=bars[1])
    rng = random.Random(seed)
    s = c.start()
    for _ in range(3000):
        m = c.mask(s)
        accepted = [c.advance(s, i) is not None for i in range(len(m))]
        assert accepted == m.tolist(), (s, c.allowed_chars(s))
        ids = [i for i in range(len(m)) if m[i] and i != EOS_ID]
        if m[EOS_ID] and (not ids or rng.random() < 0.2):
            return
        s = c.advance(s, rng.choice(ids))
    raise AssertionError("no end after 3000 characters")


_WALKER: list[AbcConstraint] = []


def _walker() -> AbcConstraint:
    if not _WALKER:
        _WALKER.append(AbcConstraint(TOK.itos, min_bars=2, max_bars=8))
    return _WALKER[0]


def test_random_tunes_pass_the_music_check():
    """The property that matters: whatever the sampler picks among the allowed characters, the
    tune passes seqgen's music check (converts, headers, bar lengths, final barline)."""
    convert = pytest.importorskip("seqgen.music.convert")
    c2 = _walker()
    rng = random.Random(7)
    prompts = ["", "X:1\nT:Jig\nM:6/8\nL:1/8\nK:G\n", "X:1\nM:C|\nL:1/8\nK:Ador\n",
               "X:1\nM:3/4\nL:1/16\nK:Bb\n"]
    tunes = [random_tune(c2, rng, prompts[i % len(prompts)]) for i in range(12)]
    body = "".join(t.split("K:", 1)[1] for t in tunes)
    assert '"' in body and re.search(r"\[[A-Ga-g^_=]", body)  # the walks wrote symbols, chords
    results = list(convert.convert_tunes(tunes, check=True, jobs=2))
    bad = [(t, r.check.reasons) for t, r in zip(tunes, results, strict=True) if not r.check.valid]
    assert not bad, bad[0]


def test_every_position_has_a_rule():
    """A new position without a rule would be a dead end (KeyError in the engine)."""
    from seqgen.music.grammar import Body, Header
    from seqgen.music.grammar.rules import BODY_RULES, HEADER_RULES

    assert set(BODY_RULES) == set(Body) and set(HEADER_RULES) == set(Header)


# ------------------------------------------------------------------ the musicians' tools
def _tool_errors(cmd: list[str], path, marker) -> list[str]:
    import subprocess

    p = subprocess.run(cmd, capture_output=True, text=True, errors="replace", timeout=60)
    return [ln for ln in (p.stdout + p.stderr).splitlines() if marker(ln)]


@pytest.mark.parametrize("tool", ["abc2midi", "abcm2ps"])
def test_random_walk_tunes_pass_abc2midi_and_abcm2ps(tool, tmp_path):
    """What the grammar allows, the tools musicians use accept: tunes of random walks over the
    grammar (every construct of the small vocabulary, as an untrained model would pick them)
    give no 'Error' line in abc2midi and no error in abcm2ps."""
    import shutil

    if shutil.which(tool) is None:
        pytest.skip(f"{tool} is not installed (Debian: apt install {'abcmidi' if tool == 'abc2midi' else tool})")
    c2 = _walker()
    rng = random.Random(11)
    prompts = ["", "X:1\nT:Jig\nM:6/8\nL:1/8\nK:G\n", "X:1\nM:C|\nL:1/8\nK:Ador\n",
               "X:1\nM:3/4\nL:1/16\nK:Bb\n", "X:1\nM:2/4\nL:1/8\nR:Hornpipe\nK:D\n"]
    bad = []
    for i in range(20):
        tune = random_tune(c2, rng, prompts[i % len(prompts)])
        path = tmp_path / f"t{i}.abc"
        path.write_text(tune, encoding="utf-8")
        if tool == "abc2midi":
            errs = _tool_errors(["abc2midi", str(path), "-o", str(tmp_path / "t.mid")], path,
                                lambda ln: ln.startswith("Error"))
        else:
            errs = _tool_errors(["abcm2ps", str(path), "-O", str(tmp_path / "t.ps")], path,
                                lambda ln: "error" in ln.lower())
        if errs:
            bad.append((tune, errs))
    assert not bad, bad[0]


def test_random_walk_tunes_pass_music21_stock_reader(tmp_path):
    """music21's own ABC reader and MIDI writer (no seqgen workaround) take them too."""
    import warnings

    converter = pytest.importorskip("music21.converter")
    c2 = _walker()
    rng = random.Random(12)
    bad = []
    for i in range(10):
        tune = random_tune(c2, rng, "X:1\nM:6/8\nL:1/8\nK:D\n" if i % 2 else "")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                converter.parse(tune, format="abc").write("midi", fp=str(tmp_path / "m.mid"))
            except Exception as e:  # noqa: BLE001 - any failure of the stock reader counts
                bad.append((tune, repr(e)[:200]))
    assert not bad, bad[0]
