"""Music: everything about ABC and tunes. Nothing here imports torch or music21 at import time.

- abc.py: ABC text: splitting files into tunes, headers, bars, tidying (no music21);
- grammar/: the ABC grammar `--constrain abc` samples under (rules apart from the engine);
- tunes.py: how a checkpoint samples (`resolve_sampling`), tune prompts, sampling whole tunes,
  numbering and writing them;
- quality.py: the measures of `seqgen eval` (music-check rates, meters, keys, novelty);
- convert.py: ABC to MIDI, MusicXML and WAV through music21, and the music check;
- m21.py: the workarounds for music21's ABC reader that convert.py applies.
"""
