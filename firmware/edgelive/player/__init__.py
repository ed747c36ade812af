"""The HDMI player: stream feeds, playback with latency control, screen composition."""
