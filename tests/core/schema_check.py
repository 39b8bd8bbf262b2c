"""Check real /v0 answers against the OpenAPI document that /v0/schema serves.

`SchemaCheck(document).check(method, path, response)` finds the operation of the request,
asserts that the answer's status is documented for it, and validates the body against that
status's schema with jsonschema, $refs resolved against the document (a binary document, such
as a PDF, is checked for its documented media type). The document is read
strictly: OpenAPI 3.0's `nullable` becomes JSON Schema's null type (so a field that is null
in an answer must be documented nullable), and an object that lists its properties takes no
others (so every field of an answer must be documented).
"""

import copy
import json
import re
from urllib.parse import quote, urlsplit

import yaml
from jsonschema import Draft4Validator, FormatChecker
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

DOCUMENT_URI = "urn:billing-platform:v0-schema"
METHODS = ("get", "post", "put", "patch", "delete")


def load_document(client) -> dict:
    response = client.get("/v0/schema")
    assert response.status_code == 200
    return yaml.safe_load(response.content)


def strict(node):
    """The document as JSON Schema (draft 4) reads it, with nullable and closed objects made explicit."""
    if isinstance(node, list):
        return [strict(item) for item in node]
    if not isinstance(node, dict):
        return node
    # (the names in a `properties` map are fields, not keywords: a price has a field named properties)
    node = {
        key: {name: strict(schema) for name, schema in value.items()}
        if key == "properties" and isinstance(value, dict)
        else strict(value)
        for key, value in node.items()
    }
    if "properties" in node and isinstance(node["properties"], dict) and "additionalProperties" not in node:
        node["additionalProperties"] = False
    if node.pop("nullable", False):
        if "type" in node:
            node["type"] = [node["type"], "null"]
            if "enum" in node:
                node["enum"] = [*node["enum"], None]
        else:
            node = {"anyOf": [node, {"type": "null"}]}
    return node


def _escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


class SchemaCheck:
    def __init__(self, document: dict):
        self.document = document
        self.strict_document = strict(copy.deepcopy(document))
        self.registry = Registry().with_resource(
            DOCUMENT_URI, Resource(contents=self.strict_document, specification=DRAFT4)
        )
        self.format_checker = FormatChecker()
        # templates with fewer parameters first: /entitlements/activeEntitlements before /entitlements/{id}
        self.templates = sorted(document["paths"], key=lambda template: (template.count("{"), template))
        self.patterns = {
            template: re.compile("^" + re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template)) + "$")
            for template in self.templates
        }
        self.answered: dict[str, set[int]] = {}

    def operations(self):
        """(method, path template, operation) of every operation in the document."""
        for template, item in self.document["paths"].items():
            for method in METHODS:
                if method in item:
                    yield method, template, item[method]

    def operation_of(self, method: str, path: str) -> tuple[str, dict]:
        path = urlsplit(path).path
        for template in self.templates:
            if self.patterns[template].match(path):
                operation = self.document["paths"][template].get(method.lower())
                assert operation is not None, f"{method} {path}: {template} documents no {method}"
                return template, operation
        raise AssertionError(f"{method} {path} is not a documented path")

    def check(self, method: str, path: str, response):
        template, operation = self.operation_of(method, path)
        status = str(response.status_code)
        where = f"{method.upper()} {path} ({operation['operationId']}) answered {status}"
        body = response.content
        assert status in operation["responses"], (
            f"{where}, which is not documented (documented: {sorted(operation['responses'])}): {body[:500]!r}"
        )
        documented = operation["responses"][status]
        for name, header in documented.get("headers", {}).items():
            if header.get("required"):
                assert response.has_header(name), f"{where} without its documented header {name}"
        content = documented.get("content")
        media_type = response.get("Content-Type", "").split(";")[0].strip()
        if content is None:
            assert not body, f"{where} with a body, where none is documented"
        elif media_type != "application/json" and "application/json" not in content:
            # a document (the invoice PDF): its media type as documented, a body of bytes
            assert media_type in content, f"{where} as {media_type}, documented as {sorted(content)}"
            schema = content[media_type]["schema"]
            assert (schema.get("type"), schema.get("format")) == ("string", "binary"), where
            assert body, f"{where} with an empty body"
        else:
            assert "application/json" in content, where
            assert response["Content-Type"].startswith("application/json"), where
            pointer = "/" + "/".join(
                _escape(token)
                for token in ("paths", template, method.lower(), "responses", status)
                + ("content", "application/json", "schema")
            )
            validator = Draft4Validator(
                {"$ref": f"{DOCUMENT_URI}#{quote(pointer, safe='/~')}"},
                registry=self.registry,
                format_checker=self.format_checker,
            )
            errors = sorted(validator.iter_errors(json.loads(body)), key=lambda error: list(error.absolute_path))
            assert not errors, f"{where} with a body that its schema refuses:\n" + "\n".join(
                f"  at {'/'.join(map(str, error.absolute_path)) or '(root)'}: {error.message[:300]}"
                for error in errors[:10]
            )
        self.answered.setdefault(operation["operationId"], set()).add(response.status_code)
        return response


class CheckedApi:
    """An API client (tests.conftest.Api, or anything with its get/post/patch/delete) whose every
    answer is checked against the document."""

    def __init__(self, api, check: SchemaCheck):
        self.api = api
        self.schema = check

    def __getattr__(self, name):
        return getattr(self.api, name)

    def get(self, path, params=None, **extra):
        return self.schema.check("get", path, self.api.get(path, params, **extra))

    def post(self, path, data=None, **extra):
        return self.schema.check("post", path, self.api.post(path, data, **extra))

    def patch(self, path, data=None, **extra):
        return self.schema.check("patch", path, self.api.patch(path, data, **extra))

    def delete(self, path, **extra):
        return self.schema.check("delete", path, self.api.delete(path, **extra))
