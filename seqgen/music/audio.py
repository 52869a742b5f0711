"""Audio of tunes: the General MIDI instrument that plays them, and compressed audio files.

    from seqgen.music.audio import program_of, render_audio
    program_of("fiddle")                       # 40: General MIDI's Violin (0-based)
    render_audio(midi_bytes, "tune.ogg")       # fluidsynth or timidity, then Ogg Vorbis

The synthesizer is the one `seqgen.music.convert.render_wav` finds (fluidsynth with a General
MIDI soundfont, or timidity); compression is libsndfile's, through `soundfile` (its wheels bundle
libsndfile with FLAC and Ogg Vorbis). numpy and soundfile are imported inside functions only.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from seqgen.errors import SeqgenError, UsageError
from seqgen.fileio import atomic_path

# General MIDI program numbers (0-based, as MIDI files hold them) of the instruments folk tunes
# are played on. Several names may share a program (GM has no uilleann pipes: bagpipe).
INSTRUMENTS: dict[str, int] = {
    "piano": 0, "harpsichord": 6, "dulcimer": 15, "organ": 19, "accordion": 21,
    "harmonica": 22, "concertina": 23, "guitar": 24, "steel-guitar": 25, "bass": 32,
    "fiddle": 40, "violin": 40, "viola": 41, "cello": 42, "harp": 46, "strings": 48,
    "trumpet": 56, "oboe": 68, "bassoon": 70, "clarinet": 71, "piccolo": 72, "flute": 73,
    "recorder": 74, "pan-flute": 75, "whistle": 78, "ocarina": 79, "banjo": 105,
    "bagpipe": 109, "pipes": 109, "fiddle-ensemble": 110,
}
DEFAULT_INSTRUMENT = "fiddle"

# Audio formats beside WAV: libsndfile's container and codec names, and file suffixes.
AUDIO_FORMATS = {"flac": ("FLAC", "PCM_16", ".flac"), "ogg": ("OGG", "VORBIS", ".ogg")}
MIME = {"flac": "audio/flac", "ogg": "audio/ogg", "wav": "audio/wav"}


def _program(instrument: str | int) -> int | str:
    """The 0-based program of `instrument`, or what is wrong with it (a message's words)."""
    if isinstance(instrument, int) or str(instrument).strip().isdigit():
        n = int(instrument)
        if not 1 <= n <= 128:
            return f"General MIDI programs run from 1 to 128, not {n}"
        return n - 1
    name = str(instrument).strip().lower().replace(" ", "-").replace("_", "-")
    if name not in INSTRUMENTS:
        return (f"unknown instrument {instrument!r}; use one of "
                f"{', '.join(sorted(INSTRUMENTS))}, or a General MIDI program 1-128")
    return INSTRUMENTS[name]


def instrument_problem(instrument: str | int) -> str | None:
    """What is wrong with `instrument`, or None when program_of knows it (the rule of the
    `instrument` field of seqgen.music.convert.Limits)."""
    program = _program(instrument)
    return program if isinstance(program, str) else None


def program_of(instrument: str | int) -> int:
    """The General MIDI program (0-127) of an instrument name from INSTRUMENTS, or of a program
    number given as such (1-128 as people count them, as a string or int). UsageError naming
    `instrument` (the CLI: --instrument) and the names otherwise."""
    program = _program(instrument)
    if isinstance(program, str):
        raise UsageError(f"`instrument`: {program}", params=True)
    return program


def compress_wav(src: str | os.PathLike, dst: str | os.PathLike, fmt: str,
                 mono: bool = False) -> None:
    """Write the WAV file `src` as `fmt` ("flac" or "ogg") at `dst` (atomically); with `mono`,
    the channels are averaged first (a solo instrument loses nothing audible, and an Ogg
    Vorbis file is about half the size)."""
    import soundfile as sf

    if fmt not in AUDIO_FORMATS:
        raise UsageError(f"audio format must be one of {', '.join(AUDIO_FORMATS)}, not {fmt!r}")
    container, subtype, _ = AUDIO_FORMATS[fmt]
    try:
        data, rate = sf.read(str(src), dtype="float32", always_2d=True)  # (frames, channels)
    except (RuntimeError, sf.LibsndfileError) as e:
        raise SeqgenError(f"cannot read the synthesizer's WAV output: {e}") from None
    if mono and data.shape[1] > 1:
        data = data.mean(axis=1, keepdims=True)
    with atomic_path(dst) as tmp, sf.SoundFile(str(tmp), "w", rate, data.shape[1],
                                                 subtype, format=container) as f:
        # in blocks: libvorbis takes stack space in proportion to one write, and one write of
        # a whole tune overflows a thread's stack (a crash, not an error)
        for start in range(0, len(data), 16384):
            f.write(data[start:start + 16384])


def render_audio(midi: bytes, path: str | os.PathLike, fmt: str | None = None,
                 soundfont: str | os.PathLike | None = None, mono: bool = False) -> None:
    """Render MIDI bytes to an audio file at `path`: "wav", "flac" or "ogg" (`fmt`, else from
    the suffix), with the synthesizer `render_wav` finds (SeqgenError naming what to install
    when there is none)."""
    from seqgen.music.convert import render_wav

    fmt = fmt or Path(path).suffix.lower().lstrip(".")
    if fmt == "wav":
        render_wav(midi, path, soundfont=soundfont)
        return
    if fmt not in AUDIO_FORMATS:
        raise UsageError(f"audio format must be wav, flac or ogg, not {fmt!r}")
    with tempfile.TemporaryDirectory(prefix="seqgen-audio-") as d:
        wav = Path(d) / "tune.wav"
        render_wav(midi, wav, soundfont=soundfont)
        compress_wav(wav, path, fmt, mono=mono)
