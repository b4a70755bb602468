"""Callin's signaling server (aiohttp): the composition root. Knows nothing of RTP."""
