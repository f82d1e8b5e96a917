"""The serving lab's reference: a tiny GPT-2, a batched KV-cache engine and an OpenAI-compatible server."""
