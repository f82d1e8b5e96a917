"""The reference agent as an agents-lab submission: `create_agent(config)` per graders/agents/interface.py.

The grader loads this exactly as it loads a candidate's notebook module, so the reference is measured through the
same host, world, model server and audit.
"""
from __future__ import annotations

from reference_systems.agents.agent import SupportAgent, create_agent

__all__ = ["SupportAgent", "create_agent"]
