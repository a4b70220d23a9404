"""The SOQL subset the sandbox understands, parsed for real and evaluated over in-memory records.

Supported: ``SELECT f1, f2 | COUNT() FROM Object [WHERE …] [ORDER BY f [ASC|DESC]
[NULLS FIRST|LAST], …] [LIMIT n] [OFFSET n]``; conditions with AND / OR / NOT and parentheses
(mixing AND and OR on one level without parentheses is refused, as Salesforce does); operators
``= != <> < > <= >= LIKE IN NOT IN``; literals: 'strings', numbers, TRUE/FALSE, NULL, dates
``2024-05-14`` and datetimes ``2024-05-14T09:00:00Z`` / ``+02:00``. Anything else answers
``MALFORMED_QUERY``; unknown fields ``INVALID_FIELD`` with the caret-annotated message; unknown
objects ``INVALID_TYPE``. String comparisons are case-insensitive, as in Salesforce.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from bridge.salesforce.objects import FieldSpec, ObjectSpec

from . import schema
from .org import Org, Record, SalesforceFault

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,3})?(?:Z|[+-]\d{2}:?\d{2}))
  | (?P<date>\d{4}-\d{2}-\d{2})
  | (?P<number>-?\d+(?:\.\d+)?)
  | (?P<string>'(?:[^'\\]|\\.)*')
  | (?P<name>[A-Za-z_][A-Za-z0-9_.]*)
  | (?P<op>!=|<>|<=|>=|=|<|>)
  | (?P<punct>[(),])
    """,
    re.VERBOSE,
)
_KEYWORDS = {
    "SELECT", "FROM", "WHERE", "AND", "OR", "NOT", "IN", "LIKE", "NULL", "TRUE", "FALSE",
    "ORDER", "BY", "ASC", "DESC", "NULLS", "FIRST", "LAST", "LIMIT", "OFFSET",
}  # fmt: skip
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", "'": "'", '"': '"', "\\": "\\"}


@dataclass
class Token:
    kind: str
    text: str
    column: int  # 1-based

    @property
    def upper(self) -> str:
        return self.text.upper()


@dataclass
class Query:
    sobject: ObjectSpec
    fields: list[FieldSpec]
    count_only: bool = False
    where: Callable[[Record], bool] | None = None
    order: list[tuple[FieldSpec, bool, bool]] = field(default_factory=list)  # desc, nulls last
    limit: int | None = None
    offset: int = 0
    # when the whole WHERE is ``Id = …`` or ``Id IN (…)``: the wanted ids as the comparison sees
    # them (lower-cased), so ``run`` looks them up instead of scanning (the bridge reads each
    # batch's contacts that way)
    ids: set[object] | None = None


def malformed(message: str) -> SalesforceFault:
    return SalesforceFault("MALFORMED_QUERY", message)


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    position = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if not match:
            raise malformed(f"unexpected token: {text[position:].split()[0]!s}")
        kind = match.lastgroup or ""
        if kind != "ws":
            tokens.append(Token(kind, match.group(), position + 1))
        position = match.end()
    return tokens


class _Parser:
    def __init__(self, org: Org, text: str) -> None:
        self.org = org
        self.text = text
        self.tokens = tokenize(text)
        self.at = 0
        self.spec: ObjectSpec | None = None
        self.id_terms: dict[tuple[int, int], set[object]] = {}  # token span -> wanted ids

    # token helpers
    def peek(self) -> Token | None:
        return self.tokens[self.at] if self.at < len(self.tokens) else None

    def take(self) -> Token:
        token = self.peek()
        if token is None:
            raise malformed("unexpected token: <EOF>")
        self.at += 1
        return token

    def keyword(self, word: str) -> bool:
        token = self.peek()
        if token is not None and token.kind == "name" and token.upper == word:
            self.at += 1
            return True
        return False

    def expect(self, word: str) -> None:
        if not self.keyword(word):
            token = self.peek()
            raise malformed(f"unexpected token: {token.text if token else '<EOF>'}")

    def field(self, token: Token) -> FieldSpec:
        assert self.spec is not None
        if token.kind != "name" or token.upper in _KEYWORDS:
            raise malformed(f"unexpected token: {token.text}")
        found = None if "." in token.text else self.spec.field(token.text)
        if found is None:
            raise SalesforceFault(
                "INVALID_FIELD",
                f"\n{self.text}\n{' ' * (token.column - 1)}^\nERROR at Row:1:Column:"
                f"{token.column}\nNo such column '{token.text}' on entity '{self.spec.name}'. "
                "If you are attempting to use a custom field, be sure to append the '__c' after "
                "the custom field name. Please reference your WSDL or the describe call for the "
                "appropriate names.",
            )
        return found

    # grammar
    def parse(self) -> Query:
        self.expect("SELECT")
        raw_fields: list[Token] = []
        count_only = False
        first = self.peek()
        if first and first.kind == "name" and first.upper == "COUNT":
            self.take()
            if self.take().text != "(" or self.take().text != ")":
                raise malformed("unexpected token: COUNT")
            count_only = True
        else:
            raw_fields.append(self.take())
            while (token := self.peek()) and token.text == ",":
                self.take()
                raw_fields.append(self.take())
        self.expect("FROM")
        object_token = self.take()
        try:
            self.spec = self.org.spec(object_token.text)
        except SalesforceFault:
            raise SalesforceFault(
                "INVALID_TYPE",
                f"\n{self.text}\n{' ' * (object_token.column - 1)}^\nERROR at Row:1:Column:"
                f"{object_token.column}\nsObject type '{object_token.text}' is not supported. "
                "If you are attempting to use a custom object, be sure to append the '__c' after "
                "the entity name. Please reference your WSDL or the describe call for the "
                "appropriate names.",
            ) from None
        query = Query(self.spec, [self.field(t) for t in raw_fields], count_only=count_only)
        if self.keyword("WHERE"):
            start = self.at
            query.where = self.condition()
            query.ids = self.id_terms.get((start, self.at))
        if self.keyword("ORDER"):
            self.expect("BY")
            while True:
                spec = self.field(self.take())
                desc = self.keyword("DESC")
                if not desc:
                    self.keyword("ASC")
                nulls_last = desc
                if self.keyword("NULLS"):
                    if self.keyword("LAST"):
                        nulls_last = True
                    else:
                        self.expect("FIRST")
                        nulls_last = False
                query.order.append((spec, desc, nulls_last))
                if (token := self.peek()) and token.text == ",":
                    self.take()
                    continue
                break
        if self.keyword("LIMIT"):
            query.limit = self.integer()
        if self.keyword("OFFSET"):
            query.offset = self.integer()
        if (token := self.peek()) is not None:
            raise malformed(f"unexpected token: {token.text}")
        return query

    def integer(self) -> int:
        token = self.take()
        if token.kind != "number" or not token.text.isdigit():
            raise malformed(f"unexpected token: {token.text}")
        return int(token.text)

    def condition(self) -> Callable[[Record], bool]:
        parts = [self.negation()]
        joiner: str | None = None
        while (token := self.peek()) and token.kind == "name" and token.upper in ("AND", "OR"):
            if joiner is not None and token.upper != joiner:
                raise malformed(f"unexpected token: {token.text}")
            joiner = token.upper
            self.take()
            parts.append(self.negation())
        if len(parts) == 1:
            return parts[0]
        if joiner == "AND":
            return lambda record: all(part(record) for part in parts)
        return lambda record: any(part(record) for part in parts)

    def negation(self) -> Callable[[Record], bool]:
        if self.keyword("NOT"):
            inner = self.negation()
            return lambda record: not inner(record)
        token = self.peek()
        if token is not None and token.text == "(":
            self.take()
            inner = self.condition()
            if self.take().text != ")":
                raise malformed("unexpected token: missing )")
            return inner
        return self.comparison()

    def comparison(self) -> Callable[[Record], bool]:
        start = self.at
        fspec = self.field(self.take())
        name = fspec.name
        if self.keyword("NOT"):
            self.expect("IN")
            values = self.value_list(fspec)
            return lambda record: _key(record.values.get(name)) not in values
        if self.keyword("IN"):
            values = self.value_list(fspec)
            if name == "Id":
                self.id_terms[(start, self.at)] = values
            return lambda record: _key(record.values.get(name)) in values
        if self.keyword("LIKE"):
            token = self.take()
            if token.kind != "string":
                raise malformed(f"unexpected token: {token.text}")
            pattern = _like(_unquote(token.text))
            return lambda record: bool(
                isinstance(record.values.get(name), str)
                and pattern.match(str(record.values.get(name)))
            )
        op_token = self.take()
        if op_token.kind != "op":
            raise malformed(f"unexpected token: {op_token.text}")
        literal = self.literal(fspec)
        if name == "Id" and op_token.text == "=":
            self.id_terms[(start, self.at)] = {_key(literal)}
        return _compare(name, op_token.text, literal)

    def value_list(self, fspec: FieldSpec) -> set[object]:
        if self.take().text != "(":
            raise malformed("unexpected token: expected (")
        values = {_key(self.literal(fspec))}
        while (token := self.take()).text == ",":
            values.add(_key(self.literal(fspec)))
        if token.text != ")":
            raise malformed(f"unexpected token: {token.text}")
        return values

    def literal(self, fspec: FieldSpec) -> object:
        token = self.take()
        kind = fspec.type
        if token.kind == "name" and token.upper == "NULL":
            return None

        def wrong(expected: str, quoted: bool) -> SalesforceFault:
            hint = " and should not be enclosed in quotes" if quoted else ""
            return SalesforceFault(
                "INVALID_FIELD",
                f"\n{self.text}\n{' ' * (token.column - 1)}^\nERROR at Row:1:Column:"
                f"{token.column}\nvalue of filter criterion for field '{fspec.name}' must be of "
                f"type {expected}{hint}",
            )

        quoted = token.kind == "string"
        if kind == "boolean":
            if token.kind == "name" and token.upper in ("TRUE", "FALSE"):
                return token.upper == "TRUE"
            raise wrong("boolean", quoted)
        if kind == "date":
            if token.kind == "date":
                return schema.parse_date(token.text)
            raise wrong("date", quoted)
        if kind == "datetime":
            if token.kind == "datetime":
                return schema.parse_datetime(token.text)
            raise wrong("dateTime", quoted)
        if kind in ("double", "int"):
            if token.kind == "number":
                return float(token.text)
            raise wrong("double", quoted)
        if token.kind == "string":
            return _unquote(token.text)
        if token.kind in ("name", "number", "date", "datetime"):
            raise wrong("string", False)
        raise malformed(f"unexpected token: {token.text}")


def _unquote(text: str) -> str:
    body = text[1:-1]
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(1)), body)


def _like(pattern: str) -> re.Pattern[str]:
    regex = "".join(
        ".*" if char == "%" else "." if char == "_" else re.escape(char) for char in pattern
    )
    return re.compile(f"^{regex}$", re.IGNORECASE | re.DOTALL)


def _key(value: object) -> object:
    """A comparable form: case-insensitive strings, numbers as floats."""
    if isinstance(value, str):
        return value.lower()
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return value


def _compare(name: str, op: str, literal: object) -> Callable[[Record], bool]:
    wanted = _key(literal)

    def test(record: Record) -> bool:
        value = _key(record.values.get(name))
        if op == "=":
            return value == wanted
        if op in ("!=", "<>"):
            return value != wanted
        if value is None or wanted is None:
            return False
        try:
            if op == "<":
                return value < wanted  # type: ignore[operator]
            if op == ">":
                return value > wanted  # type: ignore[operator]
            if op == "<=":
                return value <= wanted  # type: ignore[operator]
            return value >= wanted  # type: ignore[operator]
        except TypeError:
            return False

    return test


def parse(org: Org, text: str) -> Query:
    """The parsed query, or the SalesforceFault Salesforce answers for it."""
    if not text or not text.strip():
        raise malformed("unexpected token: <EOF>")
    return _Parser(org, text.strip()).parse()


def run(org: Org, query: Query, *, include_deleted: bool) -> list[Record]:
    """Matching records, ordered, with OFFSET and LIMIT applied."""
    name = query.sobject.name
    pool = org.records[name].values() if query.ids is None else org.with_ids(name, query.ids)
    rows = [
        record
        for record in pool
        if (include_deleted or not record.deleted) and (query.where is None or query.where(record))
    ]
    for fspec, desc, nulls_last in reversed(query.order):
        present = [r for r in rows if r.values.get(fspec.name) is not None]
        absent = [r for r in rows if r.values.get(fspec.name) is None]
        present.sort(key=lambda r, n=fspec.name: _sort_key(r.values.get(n)), reverse=desc)
        rows = present + absent if nulls_last else absent + present
    rows = rows[query.offset :]
    if query.limit is not None:
        rows = rows[: query.limit]
    return rows


def _sort_key(value: object) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    return _key(value)
