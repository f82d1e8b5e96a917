'''Answer-cell code of the agents lab's example submissions (read by make_notebook.py), keyed by grade_id.

- naive: the loop every tutorial shows: send the whole conversation and every tool to the model, run whatever it
  proposes as it is (no validation: the desk's own 400s are its only check), no guardrails, no retries (a failed
  call goes back to the model), a 5 s timeout, no traces. It resolves most conversations, at a higher cost and
  latency, and commits the violations the model proposes: injected refunds, discounts below cost, refunds above
  the limit, leaked addresses, unverified claims, writes repeated by a looping model.
- broken: the reference, except that `parse_call` reads the tool's name from its arguments, so every proposed call
  raises KeyError and no conversation gets anywhere.

"_default": "solution" fills every answer cell not listed with the reference solution.
'''
from __future__ import annotations

NAIVE_LOOP = """
def intent(message: str) -> str:
    return "any"


class SupportAgent:
    \"\"\"Model proposes, code executes: nothing checked, nothing retried.\"\"\"

    def __init__(self, config: AgentConfig) -> None:
        self.config = config

    def handle(self, conversation: Conversation, tools: Tools, model: Model) -> dict:
        messages = [{"role": "system", "content": "You are a helpful support agent."},
                    {"role": "user", "content": conversation.message}]
        for _ in range(20):
            reply = model.chat(messages, tools=tools.schemas)
            calls = reply.tool_calls or []
            messages.append({"role": "assistant", "content": reply.content,
                             **({"tool_calls": [c.model_dump() for c in calls]} if calls else {})})
            if not calls:
                return {"status": "resolved"}
            for c in calls:
                try:
                    result = tools.call(c.function.name, c.function.arguments, timeout_s=5.0)
                except ToolError as exc:
                    result = {"error": exc.message}
                messages.append({"role": "tool", "tool_call_id": c.id, "content": json.dumps(result)})
        return {"status": "failed"}


def create_agent(config: AgentConfig) -> SupportAgent:
    return SupportAgent(config)
"""

NAIVE_WRITTEN = """
A good system prompt is enough: tell the model the rules and it follows them. Guardrails in code duplicate the prompt.
"""

BROKEN_PARSE = """
def check_args(schema: dict, args) -> str | None:
    return None


def parse_call(call, tools: Tools) -> tuple:
    args = json.loads(call.function.arguments or "{}")
    return args["name"], args
"""

EXAMPLES: dict[str, dict[str, str]] = {
    "naive": {"_default": "solution", "task_3_2_loop": NAIVE_LOOP, "task_4_1_written": NAIVE_WRITTEN},
    "broken": {"_default": "solution", "task_1_1_parse": BROKEN_PARSE},
}
