"""Test support shipped with the core: contract suites for port adapters, language case files."""
