"""The supervisor: workers, fleet agent, LEDs and button around one asyncio loop."""

from edgelive.supervisor.box import Supervisor

__all__ = ["Supervisor"]
