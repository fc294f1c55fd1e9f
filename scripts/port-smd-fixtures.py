#!/usr/bin/env python3
"""Regenerates src/apply/fixtures/*.json from structured-merge-diff's merge tests.

structured-merge-diff (Apache-2.0) pins kube's apply semantics in table-driven Go tests
(`merge/*_test.go`): operations (Apply, ForceApply, Update) by managers, then the object
and every manager's field set expected after them. This script reads those Go tables and
writes them as data our own runner (`src/apply/fixtures.rs`) replays through `Updater`:

- each SMD schema becomes the CRD structural schema that expresses it (associative lists
  with keys become `x-kubernetes-list-type: map`, without keys `set`; atomic maps
  `x-kubernetes-map-type: atomic`; the deduced type `x-kubernetes-preserve-unknown-fields`),
  so the runner goes through `Schema::from_crd` as the server does;
- paths are written in the FieldsV1 key form (`f:name`, `k:{"name":"a"}`, `v:"x"`, `i:0`).

A `ChangeParser` (the schema changing between operations, as a CRD update does) becomes
a `change_schema` operation carrying the new schema. Cases that need what a CRD cannot
say (cross-version converters, `ExtractApply`) are left out and listed in the output's
`skipped`.

Usage: scripts/port-smd-fixtures.py <structured-merge-diff checkout> <out dir>
"""

import json
import os
import re
import subprocess
import sys

import yaml

FILES = [
    "multiple_appliers",
    "set",
    "key",
    "leaf",
    "nested",
    "deduced",
    "default_keys",
    "duplicates",
    "ignore",
    "preserve_unknown",
    "schema_change",
]

# ---- a small Go expression parser: composite literals, calls, strings, numbers ----

TOKEN = re.compile(
    r"""\s+|//[^\n]*|(?P<raw>`[^`]*`)|(?P<str>"(?:[^"\\]|\\.)*")|(?P<num>-?\d+(?:\.\d+)?)|"""
    r"""(?P<ident>[A-Za-z_][A-Za-z0-9_.]*)|(?P<punct>\[\]|[{}()\[\],:&*])"""
)


def tokenize(src):
    out, pos = [], 0
    while pos < len(src):
        m = TOKEN.match(src, pos)
        if not m:
            raise ValueError("cannot tokenize at %r" % src[pos : pos + 40])
        pos = m.end()
        for kind in ("raw", "str", "num", "ident", "punct"):
            if m.group(kind) is not None:
                out.append((kind, m.group(kind)))
    return out


class Call:
    def __init__(self, name, args):
        self.name, self.args = name, args


class Composite:
    def __init__(self, ty, elems):
        self.ty, self.elems = ty, elems  # elems: [(key or None, value)]

    def field(self, name, default=None):
        for k, v in self.elems:
            if k == name:
                return v
        return default


class Parser:
    def __init__(self, toks):
        self.t, self.i = toks, 0

    def peek(self, k=0):
        return self.t[self.i + k] if self.i + k < len(self.t) else (None, None)

    def next(self):
        tok = self.t[self.i]
        self.i += 1
        return tok

    def expect(self, v):
        tok = self.next()
        if tok[1] != v:
            raise ValueError("expected %s, got %s" % (v, tok))

    def type_expr(self):
        """A type before `{`: ident, []T, map[K]V, &T, *T."""
        kind, v = self.peek()
        if v in ("&", "*"):
            self.next()
            return self.type_expr()
        if v == "[]":
            self.next()
            return "[]" + self.type_expr()
        if v == "map":
            self.next()
            self.expect("[")
            k = self.type_expr()
            self.expect("]")
            return "map[%s]%s" % (k, self.type_expr())
        self.next()
        return v

    def expr(self):
        kind, v = self.peek()
        if kind == "raw":
            self.next()
            return ("yaml", v[1:-1])
        if kind == "str":
            self.next()
            return json.loads(v)
        if kind == "num":
            self.next()
            return float(v) if "." in v else int(v)
        if v == "{":
            return Composite(None, self.elements())
        if v in ("true", "false"):
            self.next()
            return v == "true"
        if v == "nil":
            self.next()
            return None
        if kind == "ident" or v in ("[]", "&", "*"):
            start = self.i
            ty = self.type_expr()
            if self.peek()[1] == "(":
                self.next()
                args = []
                while self.peek()[1] != ")":
                    args.append(self.expr())
                    if self.peek()[1] == ",":
                        self.next()
                self.next()
                return Call(ty, args)
            if self.peek()[1] == "{":
                return Composite(ty, self.elements())
            self.i = start + 1
            return ("ident", v)
        raise ValueError("unexpected %s" % (self.peek(),))

    def elements(self):
        self.expect("{")
        out = []
        while self.peek()[1] != "}":
            first = self.expr()
            if self.peek()[1] == ":":
                self.next()
                key = first[1] if isinstance(first, tuple) else first
                out.append((key, self.expr()))
            else:
                out.append((None, first))
            if self.peek()[1] == ",":
                self.next()
        self.next()
        return out


def literal_after(src, pos):
    """Parses the composite literal starting at src[pos] (a type then `{`)."""
    depth, i, started = 0, pos, False
    while True:
        c = src[i]
        if c == "`":
            i = src.index("`", i + 1)
        elif c == '"':
            i += 1
            while src[i] != '"':
                i += 2 if src[i] == "\\" else 1
        elif c == "{":
            depth += 1
            started = True
        elif c == "}":
            depth -= 1
            if started and depth == 0:
                break
        i += 1
    return Parser(tokenize(src[pos : i + 1])).expr()


# ---- SMD schema YAML to a CRD structural schema ----


def crd_schema(types, name, depth=0):
    if name == "__untyped_atomic_":
        return {}
    if name == "__untyped_deduced_":
        return {"x-kubernetes-preserve-unknown-fields": True}
    return convert(types, types[name], depth)


def convert(types, t, depth):
    if depth > 12:  # recursive named types: deeper than any fixture object
        return {}
    if "namedType" in t:
        return crd_schema(types, t["namedType"], depth + 1)
    if "scalar" in t:
        return {"string": {"type": "string"}, "numeric": {"type": "number"},
                "boolean": {"type": "boolean"}}.get(t["scalar"], {})
    if "list" in t:
        l = t["list"]
        out = {"type": "array", "items": convert(types, l["elementType"], depth + 1)}
        if l.get("elementRelationship") == "associative":
            if l.get("keys"):
                out["x-kubernetes-list-type"] = "map"
                out["x-kubernetes-list-map-keys"] = l["keys"]
            else:
                out["x-kubernetes-list-type"] = "set"
        return out
    if "map" in t:
        m = t["map"]
        out = {"type": "object"}
        props = {}
        for f in m.get("fields") or []:
            p = convert(types, f["type"], depth + 1)
            if "default" in f:
                p["default"] = f["default"]
            props[f["name"]] = p
        if props:
            out["properties"] = props
        if "elementType" in m:
            out["additionalProperties"] = convert(types, m["elementType"], depth + 1)
        if m.get("elementRelationship") == "atomic":
            out["x-kubernetes-map-type"] = "atomic"
        return out
    if "untyped" in t:
        return {}
    raise ValueError("unknown type %r" % t)


def parsers(src):
    """name -> CRD schema, for every `var xParser = func() ... { typed.NewParser(...) }()`."""
    out = {}
    for m in re.finditer(r"var (\w+) = func\(\) \*?\w*\.?Parser \{(.*?)\n\}\(\)", src, re.S):
        body = m.group(2)
        y = re.search(r"typed\.NewParser\(`(.*?)`\)", body, re.S).group(1)
        types = {t["name"]: t for t in yaml.safe_load(y)["types"]}
        same = re.search(r'SameVersionParser\{T: parser\.Type\("(\w+)"\)\}', body)
        out[m.group(1)] = ("same", same.group(1), types) if same else ("versioned", None, types)
    return out


def schema_for(parser, version):
    if parser == "DeducedParser":
        return {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    kind, name, types = PARSERS[parser]
    return crd_schema(types, name if kind == "same" else version)


# ---- paths, sets and objects ----


def scalar(v):
    """A Go conversion such as float64(1) is its value: JSON spells both alike."""
    if isinstance(v, Call) and v.name in ("float64", "int64", "int", "string", "bool"):
        return v.args[0]
    return v


def element(e):
    if isinstance(e, str):
        return "f:" + e
    if isinstance(e, Call) and e.name == "_KBF":
        a = e.args
        fields = dict(zip(a[0::2], map(scalar, a[1::2])))
        return "k:" + json.dumps(dict(sorted(fields.items())), separators=(",", ":"))
    if isinstance(e, Call) and e.name == "_V":
        return "v:" + json.dumps(scalar(e.args[0]), separators=(",", ":"))
    if isinstance(e, Call) and e.name == "_I":
        return "i:%d" % e.args[0]
    if isinstance(e, int):
        return "i:%d" % e
    raise Unsupported("path element %r" % (getattr(e, "name", e),))


def path(p):
    if not (isinstance(p, Call) and p.name == "_P"):
        raise Unsupported("path %r" % getattr(p, "name", p))
    return [element(e) for e in p.args]


def set_of(s):
    if isinstance(s, Call) and s.name == "_NS":
        return [path(p) for p in s.args]
    raise Unsupported("set %r" % getattr(s, "name", s))


def fix_tabs(y):
    lines = y.split("\n")
    if lines and lines[0] == "" and len(lines) > 1:
        lines = lines[1:]
    prefix = len(lines[0]) - len(lines[0].lstrip("\t"))
    return "\n".join(l[prefix:] for l in lines)


def obj(v):
    if v == "":
        return None  # an empty configuration
    if isinstance(v, tuple) and v[0] == "yaml":
        return yaml.safe_load(fix_tabs(v[1]))
    raise Unsupported("object %r" % (v,))


class Unsupported(Exception):
    pass


def case(name, tc, parser):
    ops = []
    version = None
    for _, op in tc.field("Ops").elems:
        if op.ty == "ChangeParser":
            ops.append({"op": "change_schema", "parser": op.field("Parser")[1]})
            continue
        kind = {"Apply": "apply", "ForceApply": "force_apply", "Update": "update"}.get(op.ty)
        if kind is None:
            raise Unsupported("operation %s" % op.ty)
        version = op.field("APIVersion")
        o = {"op": kind, "manager": op.field("Manager"), "version": version,
             "object": obj(op.field("Object"))}
        c = op.field("Conflicts")
        if c is not None:
            o["conflicts"] = [{"manager": x.field("Manager"), "path": path(x.field("Path"))}
                              for _, x in c.elems]
        ops.append(o)
    versions = {o["version"] for o in ops if "version" in o}
    if len(versions) > 1 and PARSERS.get(parser, ("same",))[0] != "same" and parser != "DeducedParser":
        raise Unsupported("several versions of a versioned schema")
    for o in ops:  # the new schema, at the version the case applies
        if o["op"] == "change_schema":
            o["schema"] = schema_for(o.pop("parser"), version)
    out = {"name": name, "schema": schema_for(parser, version), "ops": ops}
    if tc.field("Object") is not None:
        out["object"] = obj(tc.field("Object"))
    managed = tc.field("Managed")
    if managed is not None:
        out["managed"] = {}
        for m, vs in managed.elems:
            if not (isinstance(vs, Call) and vs.name == "fieldpath.NewVersionedSet"):
                raise Unsupported("managed %r" % vs)
            out["managed"][m] = {"version": vs.args[1], "fields": set_of(vs.args[0])}
    for key in ("IgnoreFilter", "IgnoredFields"):
        ig = tc.field(key)
        if ig is not None:
            out["ignored"] = {}
            for v, f in ig.elems:
                if isinstance(f, Call) and f.name == "fieldpath.NewExcludeSetFilter":
                    f = f.args[0]
                out["ignored"][v] = set_of(f)
    for key in ("ReturnInputOnNoop",):
        if tc.field(key) is not None:
            raise Unsupported(key)
    return out


def main(repo, outdir):
    global PARSERS
    commit = subprocess.check_output(["git", "-C", repo, "rev-parse", "HEAD"], text=True).strip()
    os.makedirs(outdir, exist_ok=True)
    show = lambda p: subprocess.check_output(["git", "-C", repo, "show", "HEAD:" + p], text=True)
    PARSERS = {}
    for f in FILES:  # a test may use a schema another file declares
        PARSERS.update(parsers(show("merge/%s_test.go" % f)))
    for f in FILES:
        path_ = "merge/%s_test.go" % f
        src = show(path_)
        tests, skipped = [], []
        for fm in re.finditer(r"\nfunc (Test\w+)\(t \*testing\.T\) \{(.*?)\n\}\n", src, re.S):
            fname, body = fm.group(1), fm.group(2)
            runs = re.findall(r"test\.(Test|TestWithConverter)\((\w+)", body)
            expect_error = re.search(r"test\.Test\(\w+\) == nil", body) is not None
            if not runs or runs[0][0] != "Test":
                skipped.append(fname + " (converter)")
                continue
            parser = runs[0][1]
            m = re.search(r"tests := map\[string\](?:fixture\.)?TestCase\{", body)
            single = re.search(r"test := (?:fixture\.)?TestCase\{", body)
            start = body.index("map[string]", m.start()) if m else body.index("TestCase{", single.start())
            lit = literal_after(body, start)
            cases = lit.elems if m else [(None, lit)]
            for cname, tc in cases:
                name = fname if cname is None else "%s/%s" % (fname, cname)
                try:
                    c = case(name, tc, parser)
                    if expect_error:
                        c["expect_error"] = True
                    tests.append(c)
                except Unsupported as e:
                    skipped.append("%s (%s)" % (name, e))
        with open(os.path.join(outdir, f + ".json"), "w") as out:
            json.dump({"source": "kubernetes-sigs/structured-merge-diff %s at %s" % (path_, commit),
                       "skipped": skipped, "tests": tests}, out, indent=1, sort_keys=False)
            out.write("\n")
        print("%s: %d cases, %d skipped" % (f, len(tests), len(skipped)))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
