"""Live transcripts: each participant's audio, decoded off the relay's forwarding path, cut into utterances by an
energy endpointer and recognised by a speech-to-text engine behind a small interface (engine.py), in recognition
processes (incrementally, as the audio arrives, with pocketsphinx), never on the media event loop. Card numbers
and similar digit runs are redacted (redact.py) before any text leaves the media plane's owner.

Modules: engine.py (SpeechEngine Protocol, results, choosing an engine by setting), sphinx.py (pocketsphinx, the
default), httpengine.py (an HTTP recognition service), endpoint.py (voice activity and endpointing), audio.py (Opus to
16 kHz mono PCM), stream.py (one participant's recognition stream), tap.py (the media side: taps on a call's audio
producers), redact.py.
"""
