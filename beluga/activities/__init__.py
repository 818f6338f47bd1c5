"""Activity factories for common patterns: LLM calls, tool calls, and people in the loop."""

from beluga.activities.factories import llm_activity, tool_activity
from beluga.activities.human import (
    HumanActivity,
    HumanManager,
    HumanRequest,
    HumanResponse,
    InMemoryHumanManager,
    human_activity,
)

__all__ = ["HumanActivity", "HumanManager", "HumanRequest", "HumanResponse", "InMemoryHumanManager",
           "human_activity", "llm_activity", "tool_activity"]
