"""The policy language: documents -> Policy, validation and warnings.

The expression grammar it builds on (lexer, parser, printer) is policy_core.syntax;
its three public names are offered here too.
"""

from policy_core.language.context_schema import ContextSchema, ContextSchemaError
from policy_core.language.loader import (
    ValidationReport,
    load_policies,
    load_policy_text,
    validate_policy_text,
)
from policy_core.language.source import MAX_DOCUMENT_DEPTH, MAX_DOCUMENT_VALUES
from policy_core.language.warnings import integration_uses
from policy_core.syntax.lexer import ExprSyntaxError
from policy_core.syntax.parser import parse_expression
from policy_core.syntax.printer import to_expression

__all__ = [
    "MAX_DOCUMENT_DEPTH",
    "MAX_DOCUMENT_VALUES",
    "ContextSchema",
    "ContextSchemaError",
    "ExprSyntaxError",
    "ValidationReport",
    "integration_uses",
    "load_policies",
    "load_policy_text",
    "parse_expression",
    "to_expression",
    "validate_policy_text",
]
