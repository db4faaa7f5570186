"""Hand-written recursive-descent parser: expression text -> IR (spec 4).

Static checks that need a position (unknown function or method, wrong arity,
invalid literal regex, chained comparisons) are made here, so every load
error points at the offending character.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from policy_core.ir import (
    Binary,
    Call,
    Expr,
    Index,
    ListExpr,
    Lit,
    MapExpr,
    Method,
    Neg,
    Not,
    Path,
)
from policy_core.regex import quote_pattern
from policy_core.syntax.functions import (
    FACT_FUNCTIONS,
    FACT_NAMESPACES,
    GLOBAL_FUNCTIONS,
    METHODS,
)
from policy_core.syntax.lexer import ExprSyntaxError, Token, tokenize

__all__ = ["ExprSyntaxError", "parse_expression"]

_COMPARISONS = frozenset({"==", "!=", "<", "<=", ">", ">="})
_SPANS = {"rate_limit.count": ("1s", "1m", "1h", "1d"), "budget.spent": ("day", "month")}
# A hook the loader sets to validate literal regexes (keeps re2 out of import time).
RegexCheck = Callable[[str], str | None]


def parse_expression(text: str, *, check_regex: RegexCheck | None = None) -> Expr:
    """Parse one expression; raises ExprSyntaxError with the offending offset.

    IR nodes are frozen, so a text parsed before is answered from a bounded cache
    (reason templates such as `{{ llm.model }}` recur across thousands of rules);
    errors are not cached and raise again.
    """
    return _parse_cached(text, check_regex)


@functools.lru_cache(maxsize=4096)
def _parse_cached(text: str, check_regex: RegexCheck | None) -> Expr:
    parser = _Parser(tokenize(text), check_regex)
    try:
        expr = parser.parse_or()
    except RecursionError:
        raise ExprSyntaxError(0, "expression is nested too deeply; simplify it") from None
    tok = parser.peek()
    if tok.kind != "eof":
        raise ExprSyntaxError(
            tok.offset, f"unexpected {_describe(tok)} after a complete expression"
        )
    return expr


def _describe(tok: Token) -> str:
    if tok.kind == "eof":
        return "end of expression"
    if tok.kind == "str":
        return "string"
    return repr(tok.value) if tok.kind != "num" else f"number {tok.value!r}"


class _Parser:
    def __init__(self, tokens: list[Token], check_regex: RegexCheck | None) -> None:
        self.tokens = tokens
        self.pos = 0
        self.check_regex = check_regex

    def peek(self, ahead: int = 0) -> Token:
        # `pos` never passes the final eof token; only a look-ahead can.
        index = self.pos + ahead
        tokens = self.tokens
        return tokens[index] if index < len(tokens) else tokens[-1]

    def next(self) -> Token:
        tok = self.tokens[self.pos]
        if tok.kind != "eof":
            self.pos += 1
        return tok

    def at(self, *values: str) -> bool:
        tok = self.tokens[self.pos]
        return tok.value in values and (tok.kind == "op" or tok.kind == "kw")

    def expect(self, value: str) -> Token:
        tok = self.next()
        if tok.kind not in ("op", "kw") or tok.value != value:
            raise ExprSyntaxError(tok.offset, f"expected {value!r}, found {_describe(tok)}")
        return tok

    # precedence 1 and 2 -------------------------------------------------
    def parse_or(self) -> Expr:
        left = self.parse_and()
        while self.at("||", "or"):
            self.next()
            left = Binary(op="or", left=left, right=self.parse_and())
        return left

    def parse_and(self) -> Expr:
        left = self.parse_not()
        while self.at("&&", "and"):
            self.next()
            left = Binary(op="and", left=left, right=self.parse_not())
        return left

    # precedence 3: looser than comparisons, so `!a == b` is `!(a == b)`
    def parse_not(self) -> Expr:
        if self.at("!", "not"):
            self.next()
            return Not(operand=self.parse_not())
        return self.parse_comparison()

    # precedence 4: comparisons do not chain
    def parse_comparison(self) -> Expr:
        left = self.parse_additive()
        op = self._comparison_op()
        if op is None:
            return left
        right = self.parse_additive()
        expr = Binary(op=op, left=left, right=right)
        tok = self.peek()
        if self._comparison_op(consume=False) is not None:
            raise ExprSyntaxError(
                tok.offset, "comparisons do not chain; combine them with && (a < b && b < c)"
            )
        return expr

    def _comparison_op(self, consume: bool = True) -> str | None:
        tok = self.peek()
        op: str | None = None
        width = 1
        if tok.kind == "op" and tok.value in _COMPARISONS:
            op = tok.value
        elif tok.kind == "kw" and tok.value == "in":
            op = "in"
        elif tok.kind == "kw" and tok.value == "not":
            nxt = self.peek(1)
            if nxt.kind == "kw" and nxt.value == "in":
                op, width = "not in", 2
        if op is not None and consume:
            self.pos += width
        return op

    # precedence 5 and 6 ---------------------------------------------------
    def parse_additive(self) -> Expr:
        left = self.parse_multiplicative()
        while self.at("+", "-"):
            op = self.next().value
            left = Binary(op=op, left=left, right=self.parse_multiplicative())
        return left

    def parse_multiplicative(self) -> Expr:
        left = self.parse_unary()
        while self.at("*", "/", "%"):
            op = self.next().value
            left = Binary(op=op, left=left, right=self.parse_unary())
        return left

    # precedence 7: unary minus, folded into numeric literals
    def parse_unary(self) -> Expr:
        if self.at("-"):
            self.next()
            operand = self.parse_unary()
            if (
                isinstance(operand, Lit)
                and isinstance(operand.value, int | float)
                and not isinstance(operand.value, bool)
            ):
                return Lit(value=-operand.value)
            return Neg(operand=operand)
        return self.parse_postfix()

    # precedence 8: member access, index, call -------------------------------
    def parse_postfix(self) -> Expr:
        expr = self.parse_primary()
        while True:
            if self.at("."):
                self.next()
                name_tok = self.next()
                if name_tok.kind not in ("ident", "kw"):
                    raise ExprSyntaxError(
                        name_tok.offset, f"expected a name after '.', found {_describe(name_tok)}"
                    )
                name = name_tok.value
                if self.at("("):
                    expr = self._method_call(expr, name, name_tok.offset)
                elif isinstance(expr, Path):
                    expr = Path(root=expr.root, segments=(*expr.segments, name))
                else:
                    expr = Index(target=expr, index=Lit(value=name))
            elif self.at("["):
                self.next()
                index = self.parse_or()
                self.expect("]")
                expr = _index(expr, index)
            else:
                return expr

    def _method_call(self, target: Expr, name: str, offset: int) -> Expr:
        pattern_at = self.peek(1).offset  # the first argument, for a regex error
        args = self._arguments()
        if isinstance(target, Path) and not target.segments and target.root in FACT_NAMESPACES:
            full = f"{target.root}.{name}"
            if full not in FACT_FUNCTIONS:
                raise ExprSyntaxError(offset, f"unknown function {full!r}")
            self._check_arity(full, FACT_FUNCTIONS[full], args, offset)
            self._check_literal_span(full, args, pattern_at)
            return Call(name=full, args=args)
        if name not in METHODS:
            known = ", ".join(sorted(METHODS))
            raise ExprSyntaxError(offset, f"unknown method {name!r} (methods: {known})")
        self._check_arity(name, METHODS[name], args, offset)
        if name == "matches" and isinstance(args[0], Lit) and isinstance(args[0].value, str):
            self._check_literal_regex(args[0].value, pattern_at)
        return Method(target=target, name=name, args=args)

    def _check_literal_span(self, name: str, args: tuple[Expr, ...], offset: int) -> None:
        """A literal window or period that can never work is a load error, like a bad regex."""
        allowed = _SPANS.get(name)
        if allowed is None or len(args) < 2 or not isinstance(args[1], Lit):
            return
        if args[1].value not in allowed:
            raise ExprSyntaxError(
                offset, f"{name}() takes one of {', '.join(allowed)} as its second argument"
            )

    def _check_literal_regex(self, pattern: str, offset: int) -> None:
        if self.check_regex is not None:
            problem = self.check_regex(pattern)
            if problem is not None:
                raise ExprSyntaxError(
                    offset, f"invalid regular expression {quote_pattern(pattern)}: {problem}"
                )

    def _arguments(self) -> tuple[Expr, ...]:
        self.expect("(")
        args: list[Expr] = []
        if not self.at(")"):
            args.append(self.parse_or())
            while self.at(","):
                self.next()
                args.append(self.parse_or())
        self.expect(")")
        return tuple(args)

    @staticmethod
    def _check_arity(name: str, arity: tuple[int, int], args: tuple[Expr, ...], at: int) -> None:
        low, high = arity
        if not low <= len(args) <= high:
            want = str(low) if low == high else f"{low} to {high}"
            raise ExprSyntaxError(
                at, f"{name}() takes {want} argument{'s' if high != 1 else ''}, got {len(args)}"
            )

    def parse_primary(self) -> Expr:
        tok = self.next()
        if tok.kind == "num" or tok.kind == "str":
            return Lit(value=tok.value)
        if tok.kind == "kw":
            if tok.value in ("true", "false"):
                return Lit(value=tok.value == "true")
            if tok.value == "null":
                return Lit(value=None)
            raise ExprSyntaxError(tok.offset, f"unexpected keyword {tok.value!r}")
        if tok.kind == "ident":
            if self.at("("):
                return self._global_call(tok)
            return Path(root=tok.value)
        if tok.kind == "op":
            if tok.value == "(":
                expr = self.parse_or()
                self.expect(")")
                return expr
            if tok.value == "[":
                return self._list()
            if tok.value == "{":
                return self._map()
        raise ExprSyntaxError(tok.offset, f"unexpected {_describe(tok)}")

    def _global_call(self, tok: Token) -> Expr:
        name = tok.value
        if name not in GLOBAL_FUNCTIONS:
            known = ", ".join(sorted(GLOBAL_FUNCTIONS))
            raise ExprSyntaxError(tok.offset, f"unknown function {name!r} (functions: {known})")
        args = self._arguments()
        self._check_arity(name, GLOBAL_FUNCTIONS[name], args, tok.offset)
        if name == "has" and not isinstance(args[0], Path | Index):
            raise ExprSyntaxError(tok.offset, "has() takes a path, such as has(user.email)")
        return Call(name=name, args=args)

    def _list(self) -> Expr:
        items: list[Expr] = []
        if not self.at("]"):
            items.append(self.parse_or())
            while self.at(","):
                self.next()
                if self.at("]"):
                    break
                items.append(self.parse_or())
        self.expect("]")
        return ListExpr(items=tuple(items))

    def _map(self) -> Expr:
        keys: list[str] = []
        values: list[Expr] = []
        while not self.at("}"):
            key = self.next()
            if key.kind != "str":
                raise ExprSyntaxError(key.offset, "map keys must be string literals")
            if key.value in keys:
                raise ExprSyntaxError(key.offset, f"duplicate map key {key.value!r}")
            self.expect(":")
            keys.append(key.value)
            values.append(self.parse_or())
            if not self.at(","):
                break
            self.next()
        self.expect("}")
        return MapExpr(keys=tuple(keys), values=tuple(values))


def _index(target: Expr, index: Expr) -> Expr:
    # A static path absorbs literal string keys and integer indexes; anything
    # else stays a computed index, so the IR of `a['b']` and `a.b` is the same.
    if isinstance(target, Path) and isinstance(index, Lit):
        value = index.value
        if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
            return Path(root=target.root, segments=(*target.segments, value))
    return Index(target=target, index=index)
