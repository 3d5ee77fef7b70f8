"""Testing tools for the core and for plugin authors: a real loopback receiver, a fake clock."""

from ..clock import FakeClock
from .receiver import ReceivedRequest, Receiver, Reply

__all__ = ["FakeClock", "ReceivedRequest", "Receiver", "Reply"]
