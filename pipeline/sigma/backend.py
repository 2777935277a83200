"""A pySigma backend that writes a Sigma detection as a DuckDB ``WHERE`` expression over ``cloudtrail``,
and the processing pipeline that maps Sigma's CloudTrail field names onto the lake's columns.

Field names (``cloudtrail_pipeline``): Sigma's AWS CloudTrail rules name fields as AWS writes
them, and so does the lake (docs/schema.md), so the mapping is mostly the identity:

- top-level columns and struct fields keep their dotted names (``eventName``, ``userIdentity.type``,
  ``userIdentity.sessionContext.sessionIssuer.arn``, ``tlsDetails.tlsVersion``);
- fields inside the free-form JSON columns (``requestParameters``, ``responseElements``,
  ``additionalEventData``, ``serviceEventDetails``, ...) become JSON paths read as text:
  ``requestParameters.bucketName`` → ``requestParameters->>'$.bucketName'``;
- a field the lake does not have is an error naming the field (never a silently false query).

Values: plain values compare exactly (``=``, ``IN``): CloudTrail values are machine-written
identifiers (``eventName``, ``errorCode``), and exact comparison keeps the engine's eventName
pruning. Wildcards and ``contains``/``startswith``/``endswith`` are case-insensitive (``ILIKE``)
as Sigma specifies, ``|cased`` makes them case-sensitive (``LIKE``). ``re`` is
``regexp_matches`` (RE2 syntax; ``|re|i`` adds the ``i`` option). ``cidr`` is an exact numeric
range test for IPv4 (DuckDB's inet extension is not needed) and prefix matching for IPv6.
Numbers and booleans inside JSON columns compare as the text ``->>`` returns (``'22'``, ``'true'``).
"""

from __future__ import annotations

import ipaddress
import re
from typing import ClassVar

from sigma.conditions import ConditionAND, ConditionFieldEqualsValueExpression, ConditionNOT, ConditionOR
from sigma.conversion.base import TextQueryBackend
from sigma.conversion.state import ConversionState
from sigma.exceptions import SigmaConfigurationError
from sigma.processing.pipeline import ProcessingItem, ProcessingPipeline
from sigma.processing.transformations import FieldFunctionTransformation
from sigma.types import SigmaCIDRExpression, SigmaCompareExpression, SigmaString

from pipeline import schema

#: CloudTrail columns holding free-form JSON: Sigma's dotted names below them are JSON paths.
JSON_COLUMNS = frozenset(c.name for c in schema.load("cloudtrail").columns if c.type == "json")
_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _struct_paths(cols, prefix="") -> dict[str, str]:
    """Every column and nested struct field path → its type (``userIdentity.arn`` → string)."""
    out = {}
    for c in cols:
        out[prefix + c.name] = c.type
        if c.type == "struct" and c.fields:
            out.update(_struct_paths(c.fields, prefix + c.name + "."))
    return out


COLUMN_TYPES = _struct_paths(schema.load("cloudtrail").columns)


class UnknownFieldError(SigmaConfigurationError):
    """A Sigma field that is not a column of the lake's cloudtrail table."""


def json_path(parts: list[str]) -> str:
    return "$" + "".join(f".{p}" if _KEY.match(p) else '."' + p.replace('"', '\\"') + '"' for p in parts)


def field_sql(name: str) -> str:
    """The DuckDB expression of a Sigma CloudTrail field name (see the module docstring)."""
    if name in COLUMN_TYPES and COLUMN_TYPES[name] not in ("json", "list<struct>"):
        return name
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        head = ".".join(parts[:i])
        if COLUMN_TYPES.get(head) == "json":
            if i == len(parts):
                return f"CAST({head} AS VARCHAR)"
            return f"{head}->>'{json_path(parts[i:])}'"
    raise UnknownFieldError(f"field {name!r} is not a cloudtrail column (docs/schema.md lists them)")


def is_text(sql: str) -> bool:
    """Whether a mapped field is text (JSON paths and string columns) rather than bool/int."""
    return "->>" in sql or sql.startswith("CAST(") or COLUMN_TYPES.get(sql) == "string"


def cloudtrail_pipeline() -> ProcessingPipeline:
    """Sigma CloudTrail field names → lake column expressions (``FieldFunctionTransformation``)."""
    return ProcessingPipeline(
        name="soclake CloudTrail field mapping",
        priority=20,
        items=[ProcessingItem(identifier="soclake_cloudtrail_fields",
                              transformation=FieldFunctionTransformation(transform_func=field_sql, mapping={}))],
    )


def sql_string(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def ipv4_number(field: str) -> str:
    """An IPv4 address in ``field`` as a number (NULL for anything else)."""
    return (f"CASE WHEN regexp_full_match({field}, '\\d{{1,3}}(\\.\\d{{1,3}}){{3}}') THEN "
            f"list_reduce(list_transform(string_split({field}, '.'), lambda o: CAST(o AS BIGINT)), "
            f"lambda a, b: a * 256 + b) END")


class SoclakeBackend(TextQueryBackend):
    """Sigma detection → DuckDB boolean expression over the ``cloudtrail`` view."""

    name: ClassVar[str] = "soclake DuckDB"
    formats: ClassVar[dict[str, str]] = {"default": "DuckDB WHERE expression over the cloudtrail table"}
    requires_pipeline: ClassVar[bool] = False
    backend_processing_pipeline: ClassVar[ProcessingPipeline] = cloudtrail_pipeline()

    precedence = (ConditionNOT, ConditionAND, ConditionOR)
    group_expression = "({expr})"
    token_separator = " "
    or_token = "OR"
    and_token = "AND"
    not_token = "NOT"
    eq_token = " = "
    field_quote = None
    str_quote = "'"
    escape_char = "\\"
    wildcard_multi = "%"
    wildcard_single = "_"
    add_escaped = "%_"
    filter_chars = ""
    bool_values = {True: "true", False: "false"}
    # every wildcard pattern (contains/startswith/endswith included) goes through one LIKE template
    wildcard_match_expression = "{field} ILIKE {value} ESCAPE '\\'"
    case_sensitive_match_expression = "{field} LIKE {value} ESCAPE '\\'"
    re_expression = "regexp_matches({field}, '{regex}'{flag_i})"
    re_escape_char = "'"
    re_escape = ("'",)
    re_escape_escape_char = False
    re_flag_prefix = False
    re_flags = {k: v for k, v in TextQueryBackend.re_flags.items() if k.name == "IGNORECASE"}
    compare_op_expression = "TRY_CAST({field} AS DOUBLE) {operator} {value}"
    compare_operators = {
        SigmaCompareExpression.CompareOperators.LT: "<",
        SigmaCompareExpression.CompareOperators.LTE: "<=",
        SigmaCompareExpression.CompareOperators.GT: ">",
        SigmaCompareExpression.CompareOperators.GTE: ">=",
    }
    field_null_expression = "{field} IS NULL"
    field_exists_expression = "{field} IS NOT NULL"
    field_not_exists_expression = "{field} IS NULL"
    convert_or_as_in = True
    convert_and_as_in = False
    in_expressions_allow_wildcards = False
    field_in_list_expression = "{field} {op} ({list})"
    or_in_operator = "IN"
    list_separator = ", "
    field_equals_field_expression = "{field1} = {field2}"
    unbound_value_str_expression = None

    def convert_value_str(self, s: SigmaString, state: ConversionState) -> str:
        """A LIKE pattern (``%``, ``_`` and ``\\`` escaped) when the value has wildcards, else the plain literal."""
        if not s.contains_special():
            return sql_string(s.to_plain())
        return sql_string(s.convert("\\", "%", "_", "%_", ""))

    def convert_condition_field_eq_val_str_case_sensitive(self, cond, state: ConversionState):
        if cond.value.contains_special():
            return super().convert_condition_field_eq_val_str_case_sensitive(cond, state)
        return f"{cond.field} = {sql_string(cond.value.to_plain())}"

    def get_flag_template(self, r):
        flags = super().get_flag_template(r)
        return {k: (", 'i'" if v else "") for k, v in flags.items()}

    def convert_condition_field_eq_val_str(self, cond, state: ConversionState):
        if cond.value.contains_special():
            return super().convert_condition_field_eq_val_str(cond, state)
        return f"{cond.field} = {sql_string(cond.value.to_plain())}"

    def convert_condition_not(self, cond: ConditionNOT, state: ConversionState):
        """``NOT coalesce(x, false)``: Sigma's ``not filter`` holds when the filter's field is absent,
        where SQL's ``NOT (NULL)`` would drop the row."""
        inner = self.convert_condition(cond.args[0], state)
        return f"NOT coalesce(({inner}), false)"

    def convert_condition_field_eq_val_num(self, cond, state: ConversionState):
        if is_text(cond.field):
            return f"{cond.field} = {sql_string(str(cond.value))}"
        return f"{cond.field} = {cond.value}"

    def convert_condition_field_eq_val_bool(self, cond, state: ConversionState):
        if is_text(cond.field):
            return f"{cond.field} = {sql_string('true' if cond.value.boolean else 'false')}"
        return super().convert_condition_field_eq_val_bool(cond, state)

    def convert_condition_field_eq_val_cidr(self, cond: ConditionFieldEqualsValueExpression, state: ConversionState):
        cidr: SigmaCIDRExpression = cond.value
        net = cidr.network
        if isinstance(net, ipaddress.IPv4Network):
            lo, hi = int(net.network_address), int(net.broadcast_address)
            return f"{ipv4_number(cond.field)} BETWEEN {lo} AND {hi}"
        expanded = ConditionOR([ConditionFieldEqualsValueExpression(cond.field, SigmaString(p)) for p in cidr.expand()],
                               cond.source)
        return self.convert_condition(expanded, state)

    def finalize_query_default(self, rule, query, index, state):
        return query
