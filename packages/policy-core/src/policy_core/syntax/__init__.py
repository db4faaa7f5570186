"""The expression language's grammar: lexer, parser, printer, reason templates, function table.

Below the compiler (which parses reason templates and prints paths) and the
language's document loader (which parses conditions); it imports only the IR.
"""
