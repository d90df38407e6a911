"""The target contract: what AgentX needs from a system it improves."""

from agentx.target.contract import Target, TargetError

__all__ = ["Target", "TargetError"]
