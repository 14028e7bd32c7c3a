#!/usr/bin/env python3
"""Writes the JSON schemas kubeconform validates FleetTwin's Helm chart against, so that
the test suite never downloads them (tools/scripts/deploy-tools.sh runs this).

  kubeconform_schemas.py OUT --openapi-v3 DIR [--crd FILE.json ...]

--openapi-v3 is a Kubernetes release's api/openapi-spec/v3 directory (one OpenAPI document
per API group version); every kind in it becomes OUT/<group>/<kind>_<version>.json (core
kinds under OUT/v1/), for kubeconform's
  -schema-location 'OUT/{{ .Group }}/{{ .ResourceKind }}_{{ .ResourceAPIVersion }}.json'
Each --crd (a CustomResourceDefinition as JSON) adds its served versions the same way.

The schemas are strict: every object schema that lists its properties gets
"additionalProperties": false (unless it preserves unknown fields), so a misspelt or
misplaced field fails validation instead of being ignored. A kind's file holds only the
component schemas it reaches, under "components/schemas" as in the OpenAPI document.
"""

import argparse
import json
import os
import sys

REF_PREFIX = "#/components/schemas/"


def strict(node):
    """Adds additionalProperties: false to every object schema with properties."""
    if isinstance(node, dict):
        for value in node.values():
            strict(value)
        if (
            "properties" in node
            and isinstance(node["properties"], dict)
            and "additionalProperties" not in node
            and not node.get("x-kubernetes-preserve-unknown-fields", False)
        ):
            node["additionalProperties"] = False
    elif isinstance(node, list):
        for value in node:
            strict(value)
    return node


def refs(node, found):
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith(REF_PREFIX):
            found.add(ref[len(REF_PREFIX):])
        for value in node.values():
            refs(value, found)
    elif isinstance(node, list):
        for value in node:
            refs(value, found)


def closure(components, name):
    """The names of the component schemas reachable from one."""
    seen = set()
    todo = [name]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        found = set()
        refs(components[current], found)
        todo.extend(found - seen)
    return seen


def write(out, group, kind, version, schema):
    directory = os.path.join(out, group if group else "v1")
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, f"{kind.lower()}_{version}.json")
    with open(path, "w") as f:
        json.dump(schema, f, separators=(",", ":"))
    return path


def from_openapi(out, directory):
    written = 0
    for file_name in sorted(os.listdir(directory)):
        if not file_name.endswith("_openapi.json"):
            continue
        with open(os.path.join(directory, file_name)) as f:
            document = json.load(f)
        components = document.get("components", {}).get("schemas", {})
        for name, schema in components.items():
            for gvk in schema.get("x-kubernetes-group-version-kind", []):
                # Only the document that serves the kind's own group version: every kind
                # also appears in others (ListOptions, WatchEvent ...).
                group, version, kind = gvk.get("group", ""), gvk["version"], gvk["kind"]
                expected = f"api__{version}_openapi.json" if not group else (
                    f"apis__{group}__{version}_openapi.json")
                if file_name != expected:
                    continue
                needed = closure(components, name)
                kind_schema = {
                    "$schema": "http://json-schema.org/draft-07/schema#",
                    "allOf": [{"$ref": REF_PREFIX + name}],
                    "components": {"schemas": {n: strict(json.loads(json.dumps(components[n])))
                                               for n in sorted(needed)}},
                }
                write(out, group, kind, version, kind_schema)
                written += 1
    return written


def from_crd(out, path):
    with open(path) as f:
        crd = json.load(f)
    spec = crd["spec"]
    written = 0
    for version in spec["versions"]:
        if not version.get("served", True):
            continue
        schema = strict(version["schema"]["openAPIV3Schema"])
        schema["$schema"] = "http://json-schema.org/draft-07/schema#"
        write(out, spec["group"], spec["names"]["kind"], version["name"], schema)
        written += 1
    return written


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out")
    parser.add_argument("--openapi-v3", required=True)
    parser.add_argument("--crd", action="append", default=[])
    args = parser.parse_args()
    kinds = from_openapi(args.out, args.openapi_v3)
    crds = sum(from_crd(args.out, path) for path in args.crd)
    if kinds == 0:
        sys.exit(f"no kinds found in {args.openapi_v3}")
    print(f"kubeconform schemas: {kinds} Kubernetes kinds, {crds} custom resource versions "
          f"in {args.out}")


if __name__ == "__main__":
    main()
