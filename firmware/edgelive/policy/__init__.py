"""Pure decisions: reconnect, bitrate, buffer and LED policies (inputs and a clock in, decisions out)."""
