"""The `llm-policy` commands, one module per command group."""
