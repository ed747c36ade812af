"""Benchmarks that ship with the firmware (`edgelive bench …`), runnable on a box."""
