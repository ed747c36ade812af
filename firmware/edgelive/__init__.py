"""edgelive: firmware of a Raspberry Pi live camera box."""

__version__ = "0.1.0"
