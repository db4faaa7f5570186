"""The policy language: documents, expressions, printer, validation."""

from policy_core.language.context_schema import ContextSchema, ContextSchemaError
from policy_core.language.lexer import ExprSyntaxError
from policy_core.language.loader import (
    ValidationReport,
    load_policies,
    load_policy_text,
    validate_policy_text,
)
from policy_core.language.parser import parse_expression
from policy_core.language.printer import to_expression

__all__ = [
    "ContextSchema",
    "ContextSchemaError",
    "ExprSyntaxError",
    "ValidationReport",
    "load_policies",
    "load_policy_text",
    "parse_expression",
    "to_expression",
    "validate_policy_text",
]
