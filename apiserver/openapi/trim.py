#!/usr/bin/env python3
"""Trims Kubernetes' published OpenAPI documents to the resources cairn-kube serves.

Source: k8s.io/kubernetes v1.33.7 (Go module proxy), api/openapi-spec/,
Apache License 2.0. Usage: trim.py <openapi-spec dir> <out dir>
"""
import json, os, re, sys

SERVED = {
    "api/v1": ["namespaces", "nodes", "pods", "services", "endpoints", "configmaps",
               "secrets", "serviceaccounts", "events"],
    "apis/apps/v1": ["deployments", "replicasets"],
    "apis/batch/v1": ["jobs"],
    "apis/coordination.k8s.io/v1": ["leases"],
    "apis/discovery.k8s.io/v1": ["endpointslices"],
    "apis/scheduling.k8s.io/v1": ["priorityclasses"],
    "apis/rbac.authorization.k8s.io/v1": ["roles", "clusterroles", "rolebindings", "clusterrolebindings"],
    "apis/certificates.k8s.io/v1": ["certificatesigningrequests"],
}
SUBRESOURCES = {"status", "scale", "binding", "eviction", "approval"}


def served_path(path):
    for gv, resources in SERVED.items():
        prefix = "/" + gv + "/"
        if path == prefix:
            return True
        if not path.startswith(prefix):
            continue
        parts = path[len(prefix):].split("/")
        if parts[0] == "watch":
            parts = parts[1:]
        if len(parts) >= 2 and parts[0] == "namespaces" and parts[1] == "{namespace}" and len(parts) > 2:
            parts = parts[2:]
        if not parts or parts[0] not in resources:
            continue
        if len(parts) <= 2:
            return True
        return len(parts) == 3 and parts[2] in SUBRESOURCES
    return False


def refs(node, out):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                out.add(value.rsplit("/", 1)[-1])
            else:
                refs(value, out)
    elif isinstance(node, list):
        for value in node:
            refs(value, out)


def prune(doc, definitions):
    doc["paths"] = {p: v for p, v in doc["paths"].items() if served_path(p)}
    keep, todo = set(), set()
    refs(doc["paths"], todo)
    while todo:
        name = todo.pop()
        if name in keep or name not in definitions:
            continue
        keep.add(name)
        refs(definitions[name], todo)
    return {k: v for k, v in definitions.items() if k in keep}


def dump(doc, path):
    with open(path, "w") as f:
        json.dump(doc, f, separators=(",", ":"), sort_keys=True)


def main(src, out):
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(src, "swagger.json")) as f:
        v2 = json.load(f)
    v2["definitions"] = prune(v2, v2["definitions"])
    dump(v2, os.path.join(out, "v2.json"))
    for gv in SERVED:
        name = gv.replace("/", "__") + "_openapi.json"
        with open(os.path.join(src, "v3", name)) as f:
            v3 = json.load(f)
        v3["components"]["schemas"] = prune(v3, v3["components"]["schemas"])
        dump(v3, os.path.join(out, "v3", name))


if __name__ == "__main__":
    os.makedirs(os.path.join(sys.argv[2], "v3"), exist_ok=True)
    main(sys.argv[1], sys.argv[2])
