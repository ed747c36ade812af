"""Thin hardware adapters: board profile, cameras, audio, display, LEDs and button."""
