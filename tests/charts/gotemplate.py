"""Just enough of Go's text/template (and Helm's sprig functions) to render the parts of Istio's
injection template that Pod Security judges (the injected containers' securityContext blocks) and
the injected containers' images.

Supported: `{{ if }}`/`{{ else if }}`/`{{ else }}`/`{{ end }}` with `{{-`/`-}}` trimming, field
chains (`.Values.global.proxy.privileged`), `$variables`, string and number literals,
parentheses, pipelines, and the functions not, and, or, eq, ne, index, default, contains, quote,
toYaml, nindent, indent, and the injector's annotation. Anything else raises, so a template that changes shape fails the test loudly
rather than rendering wrong.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

_ACTION = re.compile(r"\{\{(-?)(.*?)(-?)\}\}", re.DOTALL)
_TOKEN = re.compile(r'\s*(?:("(?:[^"\\]|\\.)*")|(`[^`]*`)|(\()|(\))|(\|)|(\$?[A-Za-z_][\w]*|(?:\.[A-Za-z_]\w*)+|\$|\.)|(-?\d+(?:\.\d+)?))')


@dataclass
class _If:
    branches: list[tuple[str | None, list[Any]]] = field(default_factory=list)  # (condition, body); None: else


def _tokens(expression: str) -> list[str]:
    tokens, position = [], 0
    expression = expression.strip()
    while position < len(expression):
        match = _TOKEN.match(expression, position)
        if not match or match.end() == position:
            raise ValueError(f"cannot parse template expression {expression!r} at {position}")
        tokens.append(next(group for group in match.groups() if group is not None))
        position = match.end()
    return tokens


class Template:
    def __init__(self, text: str) -> None:
        self.nodes = self._parse(self._lex(text))

    @staticmethod
    def _lex(text: str) -> list[tuple[str, str]]:
        pieces: list[tuple[str, str]] = []
        position = 0
        for match in _ACTION.finditer(text):
            literal = text[position : match.start()]
            if match.group(1):
                literal = literal.rstrip()
            if pieces and pieces[-1][0] == "trim-after":
                pieces.pop()
                literal = literal.lstrip()
            pieces.append(("text", literal))
            pieces.append(("action", match.group(2).strip()))
            if match.group(3):
                pieces.append(("trim-after", ""))
            position = match.end()
        tail = text[position:]
        if pieces and pieces[-1][0] == "trim-after":
            pieces.pop()
            tail = tail.lstrip()
        pieces.append(("text", tail))
        return pieces

    def _parse(self, pieces: list[tuple[str, str]]) -> list[Any]:
        root: list[Any] = []
        stack: list[tuple[_If, list[Any]]] = []
        body = root
        for kind, value in pieces:
            if kind == "text":
                body.append(value)
            elif value.startswith("if "):
                node = _If([(value[3:], [])])
                body.append(node)
                stack.append((node, body))
                body = node.branches[-1][1]
            elif value.startswith("else if "):
                stack[-1][0].branches.append((value[8:], []))
                body = stack[-1][0].branches[-1][1]
            elif value == "else":
                stack[-1][0].branches.append((None, []))
                body = stack[-1][0].branches[-1][1]
            elif value == "end":
                if stack:  # an `end` of a block that opened before the excerpt is ignored
                    _, body = stack.pop()
            else:
                body.append(("expr", value))
        if stack:
            raise ValueError("unclosed if in template excerpt")
        return root

    def render(self, data: Mapping[str, Any], variables: Mapping[str, Any]) -> str:
        return _Renderer(data, variables).nodes(self.nodes)


class _Renderer:
    def __init__(self, data: Mapping[str, Any], variables: Mapping[str, Any]) -> None:
        self.data, self.variables = data, variables

    def nodes(self, nodes: list[Any]) -> str:
        out = []
        for node in nodes:
            if isinstance(node, str):
                out.append(node)
            elif isinstance(node, _If):
                for condition, body in node.branches:
                    if condition is None or _truthy(self.expression(condition)):
                        out.append(self.nodes(body))
                        break
            else:
                value = self.expression(node[1])
                out.append("" if value is None else (("true" if value else "false") if isinstance(value, bool) else str(value)))
        return "".join(out)

    def expression(self, text: str) -> Any:
        tokens = _tokens(text)
        value, rest = self._pipeline(tokens)
        if rest:
            raise ValueError(f"trailing tokens in {text!r}: {rest}")
        return value

    def _pipeline(self, tokens: list[str]) -> tuple[Any, list[str]]:
        commands: list[list[str]] = [[]]
        depth = 0
        while tokens:
            token = tokens[0]
            if token == ")" and depth == 0:
                break
            tokens = tokens[1:]
            depth += {"(": 1, ")": -1}.get(token, 0)
            if token == "|" and depth == 0:
                commands.append([])
            else:
                commands[-1].append(token)
        value = self._command(commands[0], None, piped=False)
        for command in commands[1:]:
            value = self._command(command, value, piped=True)
        return value, tokens

    def _operands(self, tokens: list[str]) -> list[Any]:
        values = []
        while tokens:
            token, tokens = tokens[0], tokens[1:]
            if token == "(":
                value, tokens = self._pipeline(tokens)
                tokens = tokens[1:]  # the ")"
                values.append(value)
            else:
                values.append(self._operand(token))
        return values

    def _operand(self, token: str) -> Any:
        if token[0] in '"`':
            return token[1:-1]
        if re.fullmatch(r"-?\d+(\.\d+)?", token):
            return float(token) if "." in token else int(token)
        if token in ("true", "false"):
            return token == "true"
        if token.startswith("$"):
            return self.variables[token]
        if token.startswith("."):
            value: Any = self.data
            for part in token.strip(".").split("."):
                value = value.get(part) if isinstance(value, Mapping) else None
            return value
        return _Function(token)

    def _command(self, tokens: list[str], previous: Any, *, piped: bool) -> Any:
        values = self._operands(tokens)
        if piped:  # a pipeline passes its value as the command's last argument
            values.append(previous)
        head = values[0]
        if isinstance(head, _Function):
            return _call(str(head), values[1:])
        if len(values) != 1:
            raise ValueError(f"not a function call: {tokens}")
        return head


class _Function(str):
    pass


def _truthy(value: Any) -> bool:
    """Go templates: false, 0, nil, and empty strings, maps and lists are false."""
    return value not in (None, False, 0, "") and not (isinstance(value, (Mapping, list)) and not value)


def _call(name: str, args: list[Any]) -> Any:
    if name == "not":
        return not _truthy(args[0])
    if name == "and":
        return all(_truthy(a) for a in args)
    if name == "or":
        return any(_truthy(a) for a in args)
    if name == "eq":
        return args[0] == args[1]
    if name == "ne":
        return args[0] != args[1]
    if name == "index":
        value = args[0]
        for key in args[1:]:
            value = value.get(key) if isinstance(value, Mapping) else None
        return value
    if name == "default":  # `x | default d`: d when x is empty
        fallback, value = args[0], args[1] if len(args) > 1 else None
        return value if _truthy(value) else fallback
    if name == "contains":  # sprig: `contains substring string`
        return str(args[0]) in str(args[1])
    if name == "annotation":  # Istio's injector: the pod's annotation, else the default given
        meta, key, fallback = args
        return (meta.get("Annotations") or {}).get(key, fallback)
    if name == "quote":
        return f'"{args[0]}"'
    if name == "toYaml":
        return yaml.safe_dump(args[0], default_flow_style=False).rstrip("\n")
    if name in ("nindent", "indent"):
        width, text = int(args[0]), str(args[1])
        indented = "\n".join(" " * width + line for line in text.splitlines())
        return ("\n" + indented) if name == "nindent" else indented
    raise ValueError(f"template function {name!r} is not supported here")
