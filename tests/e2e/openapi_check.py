"""Checks HTTP answers, and the JSON bodies tests send, against Parley's
OpenAPI 3.1 document (docs/api/openapi.yaml), so the document cannot drift
from what parleyd does.

    check_response(method, path_with_query, status, headers, body_bytes)
    check_request_body(method, path, body_json)
    lint_document()          -> list of problems ([] when the document is sound)

Failures raise AssertionError naming the request and what does not match.
OpenApiDoc(document_dict) does the same for any document (used by the tests
of this module). Schemas are JSON Schema 2020-12, as OpenAPI 3.1 says;
"#/components/..." references resolve against the whole document.
"""

import functools
import json
import os
import re
from urllib.parse import quote

import yaml
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

try:  # jsonschema >= 4.18 resolves references through `referencing`
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT202012
except ImportError:  # Debian 12's jsonschema 4.10 has only RefResolver
    Registry = None
    from jsonschema import RefResolver

METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
DOC_URI = "urn:parley:openapi"
BODY_EXCERPT = 300


def default_path():
    src = os.environ.get("PARLEY_SRCDIR") or os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                          "..", "..")
    return os.path.join(src, "docs", "api", "openapi.yaml")


def media_type(content_type):
    """'Application/JSON; charset=utf-8' -> 'application/json'."""
    return content_type.split(";")[0].strip().lower()


def is_json(mtype):
    return mtype == "application/json" or mtype.endswith("+json")


def _escape(part):
    return str(part).replace("~", "~0").replace("/", "~1")


def _pointer(*parts):
    return "".join("/" + _escape(p) for p in parts)


def _lower_headers(headers):
    """A dict, an http.client.HTTPMessage or (name, value) pairs -> {lowercase name: value};
    repeated headers are joined with ", "."""
    pairs = headers.items() if hasattr(headers, "items") else headers or ()
    out = {}
    for name, value in pairs:
        name = name.lower()
        out[name] = out[name] + ", " + value if name in out else value
    return out


def _excerpt(body):
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body)
    return text if len(text) <= BODY_EXCERPT else text[:BODY_EXCERPT] + "..."


def _json_path(path):
    return "$" + "".join("[%d]" % p if isinstance(p, int) else "." + str(p) for p in path)


class OpenApiDoc:
    """One parsed OpenAPI 3.1 document (a dict, as yaml.safe_load gives it)."""

    def __init__(self, document, name="openapi.yaml"):
        self.doc = document
        self.name = name
        self._validators = {}
        # (template, regex, rank): a literal segment ranks before a templated
        # one at the same position, so /a/new beats /a/{id}.
        self._templates = []
        for template in document.get("paths") or {}:
            segments = template.split("/")
            regex = "/".join(re.sub(r"\\\{[^}/]*\\\}", "[^/]+", re.escape(s)) for s in segments)
            rank = tuple(1 if "{" in s else 0 for s in segments)
            self._templates.append((template, re.compile(regex + r"\Z"), rank))

    @classmethod
    def load(cls, path):
        with open(path, encoding="utf-8") as f:
            return cls(yaml.safe_load(f), name=os.path.basename(path))

    # ------------------------------------------------------------ lookups

    def resolve(self, ref):
        """The node a local reference "#/a/b" names; KeyError when there is none."""
        if not isinstance(ref, str) or not ref.startswith("#"):
            raise KeyError("not a reference into this document: %r" % (ref,))
        node = self.doc
        for part in ref[1:].split("/")[1:]:
            part = part.replace("~1", "/").replace("~0", "~")
            if isinstance(node, list):
                node = node[int(part)]
            elif isinstance(node, dict) and part in node:
                node = node[part]
            else:
                raise KeyError("%s: %r does not resolve" % (self.name, ref))
        return node

    def _deref(self, pointer, node):
        """Follow an OpenAPI Reference Object chain: (pointer, object)."""
        seen = set()
        while isinstance(node, dict) and "$ref" in node:
            pointer = node["$ref"][1:]
            if pointer in seen:
                raise KeyError("%s: reference loop at #%s" % (self.name, pointer))
            seen.add(pointer)
            node = self.resolve(node["$ref"])
        return pointer, node

    def match_path(self, path):
        """The path template a concrete path (query allowed) falls under, or None."""
        path = path.split("?", 1)[0].split("#", 1)[0]
        hits = [(rank, t) for t, regex, rank in self._templates if regex.match(path)]
        return min(hits)[1] if hits else None

    def operation(self, method, path):
        """(pointer, operation, template) for a request; AssertionError when undocumented."""
        template = self.match_path(path)
        if template is None:
            raise AssertionError("%s %s: path not documented in %s" % (method, path, self.name))
        item_ptr, item = self._deref(_pointer("paths", template), self.doc["paths"][template])
        m = method.lower()
        if m == "head" and "head" not in item:
            m = "get"
        if m not in item:
            documented = sorted(k.upper() for k in item if k in METHODS)
            raise AssertionError("%s %s: method not documented for %s (documented: %s)"
                                 % (method, path, template, ", ".join(documented) or "none"))
        return item_ptr + _pointer(m), item[m], template

    def response(self, method, path, status):
        """(pointer, response object) for an answer: the exact code, else its
        range (4XX), else default, as OpenAPI orders them."""
        op_ptr, op, template = self.operation(method, path)
        responses = op.get("responses") or {}
        by_key = {str(k).upper(): k for k in responses}
        for key in (str(status), "%dXX" % (status // 100), "DEFAULT"):
            if key in by_key:
                k = by_key[key]
                return self._deref(op_ptr + _pointer("responses", k), responses[k])
        raise AssertionError("%s %s: status %d not documented for %s %s (documented: %s)"
                             % (method, path, status, method.upper(), template,
                                ", ".join(str(k) for k in responses) or "none"))

    # --------------------------------------------------------- validation

    def _validator(self, pointer):
        """A validator for the schema at `pointer`, its references resolved in the document."""
        v = self._validators.get(pointer)
        if v is None:
            root = {"$ref": DOC_URI + "#" + quote(pointer, safe="/~")}
            fmt = Draft202012Validator.FORMAT_CHECKER
            if Registry is not None:
                registry = Registry().with_resource(DOC_URI, Resource(self.doc, DRAFT202012))
                v = Draft202012Validator(root, registry=registry, format_checker=fmt)
            else:
                # The document as referrer: 4.10 caches its lookups in the referrer.
                resolver = RefResolver(DOC_URI, self.doc)
                v = Draft202012Validator(root, resolver=resolver, format_checker=fmt)
            self._validators[pointer] = v
        return v

    def schema_errors(self, pointer, instance, limit=5):
        """Up to `limit` lines "at $.a[0]: message" for what breaks the schema at `pointer`."""
        errors = sorted(self._validator(pointer).iter_errors(instance), key=lambda e: list(e.path))
        return ["at %s: %s" % (_json_path(e.absolute_path), e.message) for e in errors[:limit]]

    def _check_headers(self, where, resp_ptr, resp, headers):
        for name, header in (resp.get("headers") or {}).items():
            if name.lower() == "content-type":  # OpenAPI: ignored here
                continue
            h_ptr, header = self._deref(resp_ptr + _pointer("headers", name), header)
            value = headers.get(name.lower())
            if value is None:
                if header.get("required"):
                    raise AssertionError("%s: required header %s missing" % (where, name))
                continue
            if "schema" not in header:
                continue
            # Header values are text; a number schema means the text of one.
            readings = [value]
            for convert in (int, float):
                try:
                    readings.append(convert(value))
                except ValueError:
                    pass
            if not any(not self.schema_errors(h_ptr + "/schema", r, 1) for r in readings):
                raise AssertionError("%s: header %s: %r does not match %s#%s/schema (%s)"
                                     % (where, name, value, self.name, h_ptr,
                                        self.schema_errors(h_ptr + "/schema", readings[-1], 1)[0]))

    def _check_body(self, where, content_ptr, content, content_type, body):
        """Validate body bytes as the media type `content_type`; the parsed JSON or None."""
        mtype = media_type(content_type)
        if not is_json(mtype):
            return None
        try:
            data = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise AssertionError("%s: body is not JSON (%s): %s" % (where, e, _excerpt(body)))
        if "schema" in content:
            problems = self.schema_errors(content_ptr + "/schema", data)
            if problems:
                raise AssertionError("%s: body does not match %s#%s/schema:\n  %s\nbody: %s"
                                     % (where, self.name, content_ptr, "\n  ".join(problems),
                                        _excerpt(body)))
        return data

    def _media(self, where, content, content_type):
        """The documented media type key for a Content-Type header value."""
        mtype = media_type(content_type)
        keys = {k.lower(): k for k in content}
        for key in (mtype, mtype.split("/")[0] + "/*", "*/*"):
            if key in keys:
                return keys[key]
        raise AssertionError("%s: content type %r not documented (documented: %s)"
                             % (where, content_type, ", ".join(content) or "none"))

    def check_response(self, method, path, status, headers, body):
        """AssertionError unless the answer is what the document promises.
        headers: dict, HTTPMessage or pairs; body: bytes. Returns the parsed
        JSON body (None for other media types and empty bodies)."""
        where = "%s %s -> %d" % (method.upper(), path, status)
        resp_ptr, resp = self.response(method, path, status)
        headers = _lower_headers(headers)
        body = body or b""
        self._check_headers(where, resp_ptr, resp, headers)
        content = resp.get("content")
        if not content:
            if body and method.upper() != "HEAD":
                raise AssertionError("%s: %d bytes of body, but the response documents none: %s"
                                     % (where, len(body), _excerpt(body)))
            return None
        content_type = headers.get("content-type")
        if content_type is None:
            if not body:
                return None
            raise AssertionError("%s: body without Content-Type (documented: %s)"
                                 % (where, ", ".join(content)))
        key = self._media(where, content, content_type)
        if method.upper() == "HEAD" or media_type(key) == "text/event-stream":
            return None  # no body to check, or a stream checked event by event
        return self._check_body(where, resp_ptr + _pointer("content", key), content[key],
                                content_type, body)

    def check_request_body(self, method, path, body_json, content_type="application/json"):
        """AssertionError unless the operation takes this JSON body (None: no body)."""
        where = "%s %s request body" % (method.upper(), path)
        op_ptr, op, _ = self.operation(method, path)
        if "requestBody" not in op:
            if body_json is not None:
                raise AssertionError("%s: the operation documents no request body" % where)
            return
        rb_ptr, rb = self._deref(op_ptr + "/requestBody", op["requestBody"])
        if body_json is None:
            if rb.get("required"):
                raise AssertionError("%s: missing, and the operation requires one" % where)
            return
        content = rb.get("content") or {}
        key = self._media(where, content, content_type)
        self._check_body(where, rb_ptr + _pointer("content", key), content[key], content_type,
                         json.dumps(body_json).encode())

    # ---------------------------------------------------------------- lint

    def lint(self):
        """The document's problems as sentences; [] when it keeps the house rules."""
        problems = []
        doc = self.doc
        if not str(doc.get("openapi", "")).startswith("3.1."):
            problems.append("openapi: %r, expected 3.1.x" % doc.get("openapi"))
        for where, ref in _refs(doc, ""):
            try:
                self.resolve(ref)
            except (KeyError, IndexError, ValueError):
                problems.append("%s: $ref %r does not resolve" % (where or "/", ref))
        schemas = (doc.get("components") or {}).get("schemas") or {}
        if "Error" not in schemas:
            problems.append("components/schemas/Error is missing")
        for name, schema in schemas.items():
            try:
                Draft202012Validator.check_schema(schema)
            except SchemaError as e:
                problems.append("components/schemas/%s: not a valid schema: %s" % (name, e.message))
        shapes = {}
        for template, item in (doc.get("paths") or {}).items():
            shape = re.sub(r"\{[^}/]*\}", "{}", template)
            if shape in shapes:
                problems.append("paths %s and %s are the same path" % (shapes[shape], template))
            shapes[shape] = template
            try:
                _, item = self._deref(_pointer("paths", template), item)
            except KeyError:
                continue  # reported with the references
            for method in (m for m in METHODS if m in item):
                problems += self._lint_operation(template, method, item)
        return problems

    def _lint_operation(self, template, method, item):
        op = item[method]
        where = "%s %s" % (method.upper(), template)
        problems = []
        op_id = op.get("operationId")
        if not op_id:
            problems.append("%s: no operationId" % where)
        elif op_id in self._op_ids(exclude=(template, method)):
            problems.append("%s: operationId %s is used twice" % (where, op_id))
        if not op.get("summary"):
            problems.append("%s: no summary" % where)
        responses = op.get("responses") or {}
        codes = [str(k).upper() for k in responses]
        bad = [k for k in responses
               if not isinstance(k, str) or not re.fullmatch(r"[1-5]\d\d|[1-5]XX|default", k)]
        if bad:
            problems.append("%s: response codes must be quoted 3-digit codes, 1XX..5XX or default: %r"
                            % (where, bad))
        if not any(c.startswith("2") for c in codes):
            problems.append("%s: no 2xx response" % where)
        errors = [k for k in responses if str(k)[0] in "45" or k == "default"]
        if not errors:
            problems.append("%s: no error response" % where)
        security = op.get("security", self.doc.get("security") or [])
        if security and not {"401", "4XX"} & set(codes):
            problems.append("%s: needs a login but documents no 401" % where)
        for code in errors:
            problems += self._lint_error_response(where, code, responses[code])
        problems += self._lint_path_parameters(where, template, item, op)
        return problems

    def _op_ids(self, exclude):
        for template, item in (self.doc.get("paths") or {}).items():
            for method in (m for m in METHODS if m in item):
                if (template, method) != exclude and isinstance(item[method], dict):
                    yield item[method].get("operationId")

    def _lint_error_response(self, where, code, resp):
        try:
            _, resp = self._deref("", resp)
        except KeyError:
            return []  # reported with the references
        content = resp.get("content") or {}
        if "application/json" not in content:
            return ["%s: error response %s has no application/json body" % (where, code)]
        if not self._uses_error(content["application/json"].get("schema")):
            return ["%s: error response %s does not use #/components/schemas/Error" % (where, code)]
        return []

    def _uses_error(self, schema, seen=()):
        """Error itself, allOf [Error, ...], or a oneOf with Error as one choice
        (a richer error body next to it), directly or through references."""
        if not isinstance(schema, dict):
            return False
        ref = schema.get("$ref")
        if ref == "#/components/schemas/Error":
            return True
        if isinstance(ref, str) and ref not in seen:
            try:
                return self._uses_error(self.resolve(ref), seen + (ref,))
            except (KeyError, IndexError, ValueError):
                return False
        return any(self._uses_error(s, seen)
                   for s in list(schema.get("allOf") or ()) + list(schema.get("oneOf") or ()))

    def _lint_path_parameters(self, where, template, item, op):
        in_template = set(re.findall(r"\{([^}/]*)\}", template))
        declared, problems = set(), []
        for p in list(item.get("parameters") or ()) + list(op.get("parameters") or ()):
            try:
                _, p = self._deref("", p)
            except KeyError:
                continue
            if p.get("in") != "path":
                continue
            declared.add(p.get("name"))
            if p.get("required") is not True:
                problems.append("%s: path parameter %s must say required: true" % (where, p.get("name")))
        for name in sorted(in_template - declared):
            problems.append("%s: path parameter {%s} is not declared" % (where, name))
        for name in sorted(declared - in_template):
            problems.append("%s: declares path parameter %s that the path does not have" % (where, name))
        return problems


def _refs(node, where):
    """Every ("pointer", "$ref value") in a document; non-local refs show as unresolvable."""
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "$ref" and isinstance(v, str):
                yield where, v
            else:
                yield from _refs(v, where + _pointer(k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _refs(v, where + _pointer(i))


# ------------------------------------------------ the project's document

@functools.lru_cache(maxsize=None)
def document(path=None):
    """The project's document, parsed once per path."""
    return OpenApiDoc.load(path or default_path())


def check_response(method, path_with_query, status, headers, body_bytes):
    return document().check_response(method, path_with_query, status, headers, body_bytes)


def check_request_body(method, path, body_json):
    return document().check_request_body(method, path, body_json)


def lint_document():
    return document().lint()
