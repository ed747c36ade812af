"""Media plumbing over PyAV: encoders, FLV/RTMP in and out, the wall-clock stamp."""
