"""Pure decisions: reconnect, bitrate, buffer and LED policies (no clock, no I/O)."""
