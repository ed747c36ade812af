"""The real servers tests run against (see edgelive.testbed)."""

from edgelive.testbed import Mosquitto, NginxRtmp, free_port, wait_port

__all__ = ["Mosquitto", "NginxRtmp", "free_port", "wait_port"]
