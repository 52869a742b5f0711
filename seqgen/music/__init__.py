"""Music: ABC text handling (abc.py, no music21) and conversion through music21 (imported lazily)."""
