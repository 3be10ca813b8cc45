"""The language: syntax tree, parser, expansion, einsum text, compiler, the .tn library."""
