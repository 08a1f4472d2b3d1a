"""What schemathesis needs to test this API against its description with every check.

XML answers are read the way the OpenAPI description says they are written, registered (on
import) as schemathesis's deserializer for ``application/xml`` and
``application/problem+xml``: an XML document or problem becomes the same data as its JSON twin,
guided only by the description's schemas and their ``xml`` annotations (element names, wrapped
or bare collections, namespaces). So XML answers are validated against the schemas like JSON
ones, and the description's links (JSON pointers into the body) resolve in XML answers too. A
description whose ``xml`` annotations do not match the documents fails here.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from typing import Any

import schemathesis
from lxml import etree

from billing_api.api import negotiation
from billing_api.errors import InvalidInput

Schema = dict[str, Any]
XML_TYPES = ("application/xml", "application/problem+xml")
CURSOR_SHAPE = re.compile("^c1[A-Za-z0-9_-]{1,100}$")  # the description's pattern for since


def _local(element: etree._Element) -> str:
    return str(etree.QName(element).localname)


def _resolve(spec: Schema, schema: Schema) -> Schema:
    while "$ref" in schema:
        node: Any = spec
        for part in schema["$ref"].removeprefix("#/").split("/"):
            node = node[part]
        schema = node
    return schema


def _types(schema: Schema) -> set[str]:
    kind = schema.get("type", "string")
    return set(kind) if isinstance(kind, list) else {kind}


def _scalar(text: str, schema: Schema) -> Any:
    types = _types(schema)
    if text == "" and "null" in types:
        return None
    if "boolean" in types and text in ("true", "false"):
        return text == "true"
    if "integer" in types:
        try:
            return int(text)
        except ValueError:
            pass
    if "number" in types:
        try:
            return float(text)
        except ValueError:
            pass
    return text  # whatever it is, the schema validation judges it


def _xml_name(spec: Schema, schema: Schema, default: str) -> str:
    name = _resolve(spec, schema).get("xml", {}).get("name")
    own = schema.get("xml", {}).get("name")  # an annotation beside a $ref wins
    return str(own or name or default)


def read(spec: Schema, element: etree._Element, schema: Schema) -> Any:
    """``element`` as the data ``schema`` describes."""
    schema = _resolve(spec, schema)
    types = _types(schema)
    if "object" not in types:
        return _scalar(element.text or "", schema)
    if "null" in types and len(element) == 0 and not (element.text or "").strip():
        return None
    children = list(element)
    result: dict[str, Any] = {}
    used: set[int] = set()
    for name, prop in schema.get("properties", {}).items():
        resolved = _resolve(spec, prop)
        if "array" in _types(resolved):
            xml = {**resolved.get("xml", {}), **prop.get("xml", {})}
            item_name = _xml_name(spec, resolved["items"], name)
            if xml.get("wrapped"):
                wrapper = [c for c in children if _local(c) == xml.get("name", name)]
                if not wrapper:
                    continue
                used.add(id(wrapper[0]))
                items = [c for c in wrapper[0] if _local(c) == item_name]
            else:
                items = [c for c in children if _local(c) == item_name]
                used.update(id(c) for c in items)
            result[name] = [read(spec, item, resolved["items"]) for item in items]
            continue
        found = [c for c in children if _local(c) == _xml_name(spec, prop, name)]
        if found:
            used.add(id(found[0]))
            result[name] = read(spec, found[0], prop)
    for child in children:  # what the schema does not know stays visible to the validation
        if id(child) not in used:
            result.setdefault(_local(child), child.text or "")
    return result


def _response_schema(spec: Schema, path: str, method: str, status: int,
                     media_type: str) -> Schema | None:
    responses = spec["paths"][path][method.lower()]["responses"]
    declared = responses.get(str(status)) or responses.get("default")
    content = (declared or {}).get("content", {})
    found = content.get(media_type)
    return found.get("schema") if found else None


@schemathesis.deserializer(*XML_TYPES)
def deserialize_xml(ctx: schemathesis.DeserializationContext,
                    response: schemathesis.Response) -> Any:
    spec: Schema = ctx.operation.schema.raw_schema
    media_type = response.headers.get("content-type", [""])[0].split(";")[0].strip()
    schema = _response_schema(spec, ctx.operation.path, ctx.operation.method,
                              response.status_code, media_type)
    if schema is None or "object" not in _types(_resolve(spec, schema)):
        return response.content.decode("utf-8")  # e.g. an XSD, described as a string
    root = etree.fromstring(response.content)
    expected = _xml_name(spec, schema, "")
    if expected and _local(root) != expected:
        raise ValueError(f"root element {_local(root)!r}, the description says {expected!r}")
    return read(spec, root, schema)


def without_made_up_cursor(case: Any) -> Any:
    """A cursor is valid only as the server made it for this key (its checksum and account),
    which no schema can say: a well-shaped generated or example one is left out (the cursor
    tests are tests/test_sync_http.py); a malformed one stays, a 400 as documented."""
    query = case.query
    since = query.get("since") if isinstance(query, dict) else None
    if isinstance(since, str) and CURSOR_SHAPE.fullmatch(since):
        del query["since"]
    return case


def keep_the_window_in_order(today: dt.date) -> Callable[[Any, Any], Any]:
    """The rules of the description a schema cannot say: a cursor must be the server's
    (``without_made_up_cursor``), and the date window must not end before it starts (a 400
    the description documents, and tests/test_api_documents.py tests). Generated dates that
    would invert it are put in order; nothing else changes, so a negative case stays
    negative."""

    def parsed(value: object) -> dt.date | None:
        try:
            return negotiation.parse_date("date", value) if isinstance(value, str) else None
        except InvalidInput:
            return None

    def hook(context: Any, case: Any) -> Any:
        query = without_made_up_cursor(case).query
        if not isinstance(query, dict):
            return case
        start, end = parsed(query.get("startDate")), parsed(query.get("endDate"))
        if start and end and end < start:
            query["startDate"], query["endDate"] = query["endDate"], query["startDate"]
        elif start and "endDate" not in query and start > today:  # end defaults to today
            query["endDate"] = query["startDate"]
        return case

    return hook
