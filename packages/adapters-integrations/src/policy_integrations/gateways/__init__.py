"""Where gateways meet the engine (issue 15): the LiteLLM proxy guardrail, the guarded OpenAI client.

Each gateway lives in its own module and imports its gateway library itself, so
importing this package needs neither litellm nor openai.
"""
