"""`python -m policy_cli` is `llm-policy`."""

from policy_cli.main import main

main(prog_name="llm-policy")
