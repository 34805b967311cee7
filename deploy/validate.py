#!/usr/bin/env python3
"""The checks behind deploy/validate.sh (run that: it installs what this needs).

1. Render every kustomization under deploy/kubernetes (base, overlays, the example policy, and
   each overlay with the optional PodMonitor component) with `kubectl kustomize`.
2. Validate every rendered object against the Kubernetes JSON schemas shipped in the
   kubernetes-validate package (offline), strictly, for the oldest and newest Kubernetes we
   support. Cilium and Prometheus Operator objects are skipped by name: their CRD schemas are
   not in that package.
3. Check what the schemas cannot: the DaemonSet keeps the guarantees of issue 5 (surge update,
   node-critical, every taint, probes, least privilege), and each manifest agrees with the
   zonegate config it mounts (probe ports, listen addresses, no upstream pointing back at
   zonegate itself, policy files that exist in the image or a mount, the LRP and the
   CiliumNetworkPolicy select zonegate's pods).
4. Run `zonegate check` on every zonegate config inside the rendered ConfigMaps
   ($ZONEGATE_BIN, default target/debug/zonegate); the AKS localdnsconfig.json goes through
   `zonegate import-aks` first. A missing binary or subcommand fails: nothing is skipped.
   With $ZONEGATE_WASM_DIR (where scripts/build-policies.sh put the policies), the image's
   policy paths point there for the check, and the three policies the image ships must be there.
5. The Grafana dashboard queries only metrics zonegate exports, and all of them.
6. The Dockerfile passes hadolint (when $HADOLINT names it).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

import yaml
from kubernetes_validate import utils as kv

DEPLOY = Path(__file__).resolve().parent
REPO = DEPLOY.parent
KUSTOMIZE = DEPLOY / "kubernetes"
DASHBOARD = DEPLOY / "grafana" / "zonegate-dashboard.json"

# Oldest: DaemonSet maxSurge is GA since 1.25, the preStop sleep action on by default since 1.30.
KUBE_VERSIONS = os.environ.get("KUBE_VERSIONS", f"1.30 {kv.latest_version()}").split()
CRD_GROUPS = {"cilium.io": "Cilium", "monitoring.coreos.com": "Prometheus Operator"}

IMAGE_POLICY_DIR = "/usr/share/zonegate/policies/"
IMAGE_POLICIES = {"fqdn_allowlist.wasm", "blocklist.wasm", "zone_router.wasm"}
OBSERVABILITY_DEFAULTS = {"metrics": "0.0.0.0:9253", "health": "0.0.0.0:8080", "ready": "0.0.0.0:8181"}
HOST_NETWORK_CAPS = {"NET_ADMIN", "NET_BIND_SERVICE", "NET_RAW"}
POD_CAPS = {"NET_BIND_SERVICE"}
# An overlay whose config must equal another's except for where the policies come from.
VARIANTS = {"overlays/cilium-lrp-oci": "overlays/cilium-lrp"}

CORE_METRICS = {
    "coredns_dns_requests_total", "coredns_dns_responses_total",
    "coredns_dns_request_duration_seconds", "coredns_cache_hits_total",
    "coredns_cache_misses_total", "coredns_cache_entries", "coredns_cache_served_stale_total",
    "coredns_forward_max_concurrent_rejects_total", "coredns_proxy_request_duration_seconds",
    "coredns_forward_healthcheck_broken_total",
}
ZONEGATE_METRICS = {
    "zonegate_policy_decisions_total", "zonegate_policy_errors_total",
    "zonegate_policy_duration_seconds", "zonegate_policy_info", "zonegate_reload_total",
    "zonegate_oci_pulls_total",
}
# Also exported (the CoreDNS metrics node-local-dns users know) and allowed in the dashboard,
# not required there.
OTHER_METRICS = {
    "coredns_dns_request_size_bytes", "coredns_dns_response_size_bytes",
    "coredns_dns_do_requests_total", "coredns_cache_requests_total",
    "coredns_cache_evictions_total", "coredns_proxy_healthcheck_failures_total",
    "coredns_reload_failed_total", "coredns_build_info", "zonegate_setup_errors_total", "up",
}


class Results:
    def __init__(self) -> None:
        self.passed = 0
        self.failed = 0

    def record(self, what: str, problems: list[str], detail: str = "") -> None:
        if problems:
            self.failed += 1
            print(f"FAIL {what}")
            for p in problems:
                print(f"     - {p}")
        else:
            self.passed += 1
            print(f"ok   {what}{'  (' + detail + ')' if detail else ''}")


# ---------------------------------------------------------------- rendering

def targets() -> dict[str, Path]:
    found = {}
    for k in sorted(KUSTOMIZE.rglob("kustomization.yaml")):
        d = k.parent
        if yaml.safe_load(k.read_text()).get("kind") == "Component":
            continue
        found[str(d.relative_to(KUSTOMIZE))] = d
    return found


def render(d: Path) -> list[dict]:
    out = subprocess.run(["kubectl", "kustomize", str(d)], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(out.stderr.strip())
    return [o for o in yaml.safe_load_all(out.stdout) if o]


def render_with_component(overlay: Path, component: Path, tmp: Path) -> list[dict]:
    d = Path(tempfile.mkdtemp(dir=tmp))
    (d / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [os.path.relpath(overlay, d)],
        "components": [os.path.relpath(component, d)],
    }))
    return render(d)


# ---------------------------------------------------------------- schemas

def check_schemas(objs: list[dict]) -> tuple[list[str], list[str]]:
    problems, skipped = [], []
    for o in objs:
        name = f"{o.get('kind')}/{o.get('metadata', {}).get('name')}"
        group = o.get("apiVersion", "").rpartition("/")[0]
        if group in CRD_GROUPS:
            skipped.append(f"{name} ({CRD_GROUPS[group]} CRD)")
            continue
        for v in KUBE_VERSIONS:
            try:
                kv.validate(o, v, strict=True)
            except kv.ValidationError as e:
                path = ".".join(str(p) for p in e.path)
                problems.append(f"{name} against {v}: {path}: {e.message}")
            except kv.SchemaNotFoundError as e:
                problems.append(f"{name}: {e.message}")
    return problems, skipped


# ---------------------------------------------------------------- the DaemonSet

def find(objs: list[dict], kind: str, name: str | None = None) -> list[dict]:
    return [o for o in objs if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]


def zonegate_container(pod: dict) -> dict:
    return next(c for c in pod["containers"] if c["name"] == "zonegate")


def effective_security(pod: dict, c: dict) -> dict:
    return {**pod.get("securityContext", {}), **c.get("securityContext", {})}


def check_daemonset(ds: dict) -> list[str]:
    p = []
    pod = ds["spec"]["template"]["spec"]
    c = zonegate_container(pod)
    ru = ds["spec"].get("updateStrategy", {}).get("rollingUpdate", {})
    if ru.get("maxUnavailable") != 0 or not ru.get("maxSurge"):
        p.append(f"rolling update must surge and never take a pod away first: {ru}")
    if pod.get("priorityClassName") != "system-node-critical":
        p.append("priorityClassName is not system-node-critical")
    if {"operator": "Exists"} not in pod.get("tolerations", []):
        p.append("does not tolerate every taint (a toleration with only operator: Exists)")
    res = c.get("resources", {})
    if not {"cpu", "memory"} <= set(res.get("requests", {})) or "memory" not in res.get("limits", {}):
        p.append(f"resources need cpu+memory requests and a memory limit: {res}")
    for probe, path in (("livenessProbe", "/health"), ("readinessProbe", "/ready")):
        if c.get(probe, {}).get("httpGet", {}).get("path") != path:
            p.append(f"{probe} is not an HTTP GET of {path}")
    host = pod.get("hostNetwork", False)
    if host and any(x.get("ports") for x in pod["containers"] + pod.get("initContainers", [])):
        p.append("host network with container ports: they become hostPorts and the surge pod "
                 "cannot be scheduled next to the old one")
    sec = effective_security(pod, c)
    caps = sec.get("capabilities", {})
    allowed = HOST_NETWORK_CAPS if host else POD_CAPS
    if caps.get("drop") != ["ALL"] or not set(caps.get("add", [])) <= allowed:
        p.append(f"capabilities must drop ALL and add only {sorted(allowed)}: {caps}")
    if not sec.get("readOnlyRootFilesystem") or sec.get("allowPrivilegeEscalation") is not False:
        p.append("needs readOnlyRootFilesystem: true and allowPrivilegeEscalation: false")
    if not host and (not sec.get("runAsNonRoot") or sec.get("runAsUser", 0) == 0):
        p.append("outside host-network mode zonegate must run as non-root")
    return p


# ---------------------------------------------------------------- the mounted config

def mounted_file(objs: list[dict], pod: dict, path: str) -> tuple[str | None, str]:
    """The content of `path` as the pod sees it through a ConfigMap volume."""
    c = zonegate_container(pod)
    mounts = [m for m in c.get("volumeMounts", []) if path.startswith(m["mountPath"].rstrip("/") + "/")]
    if not mounts:
        return None, f"{path} is on no volume mount"
    m = max(mounts, key=lambda m: len(m["mountPath"]))
    vol = next(v for v in pod["volumes"] if v["name"] == m["name"])
    if "configMap" not in vol:
        return None, f"{path} is not on a ConfigMap volume"
    key = path[len(m["mountPath"].rstrip("/")) + 1:]
    cms = find(objs, "ConfigMap", vol["configMap"]["name"])
    if not cms or key not in cms[0].get("data", {}):
        return None, f"ConfigMap {vol['configMap']['name']} has no key {key}"
    return cms[0]["data"][key], ""


def config_arg(c: dict) -> tuple[str, str] | None:
    args = c.get("args", [])
    for flag in ("--config", "--aks-config"):
        if flag in args:
            return flag, args[args.index(flag) + 1]
    return None


def split_addr(addr: str, default_port: int | None = None) -> tuple[str, int | None]:
    m = re.fullmatch(r"\[(.+)\]:(\d+)|([^:\[\]]+):(\d+)|(.+)", addr)
    host = m.group(1) or m.group(3) or m.group(5)
    port = m.group(2) or m.group(4)
    return host, int(port) if port else default_port


def is_wildcard(host: str) -> bool:
    return host in ("0.0.0.0", "::")


def check_native_config(cfg: dict, objs: list[dict], template: dict) -> list[str]:
    """What must agree between a zonegate.toml and the pod template that runs it."""
    p = []
    pod = template["spec"]
    c = zonegate_container(pod)
    host_net = pod.get("hostNetwork", False)
    obs = {**OBSERVABILITY_DEFAULTS, **cfg.get("observability", {})}
    for probe, key in (("livenessProbe", "health"), ("readinessProbe", "ready")):
        h, port = split_addr(obs[key])
        get = c[probe]["httpGet"]
        if get.get("port") != port:
            p.append(f"{probe} port {get.get('port')} but {key} listens on {obs[key]}")
        if not is_wildcard(h) and get.get("host") != h:
            p.append(f"{probe} must target host {h}: {key} listens on {obs[key]} only")
    _, mport = split_addr(obs["metrics"])
    annotated = template.get("metadata", {}).get("annotations", {}).get("prometheus.io/port")
    if annotated is not None and annotated != str(mport):
        p.append(f"prometheus.io/port {annotated} but metrics listen on {obs['metrics']}")

    listens = {split_addr(x["address"], 53) for x in cfg.get("listen", [])}
    fixed = [(h, port) for h, port in listens if not is_wildcard(h)]
    if fixed and not host_net:
        p.append(f"a pod network pod can only listen on the wildcard address, not {fixed}")
    if fixed and host_net and "--setup-interface" not in c.get("args", []):
        p.append(f"{fixed} are on no interface of the node without --setup-interface")
    for gname, group in cfg.get("upstreams", {}).items():
        for s in group.get("servers", []):
            if s == "resolv.conf":
                continue
            if split_addr(s, 53) in listens:
                p.append(f"upstreams.{gname} forwards to {s}, an address zonegate itself serves")
    for svc in find(objs, "Service", "kube-dns-upstream"):
        ip = svc["spec"].get("clusterIP")
        servers = [split_addr(s, 53)[0] for g in cfg.get("upstreams", {}).values() for s in g.get("servers", [])]
        if ip and ip not in servers:
            p.append(f"kube-dns-upstream is pinned to {ip} but no upstream uses it")

    mounts = [m["mountPath"].rstrip("/") + "/" for m in c.get("volumeMounts", [])]
    for name, pol in cfg.get("policies", {}).items():
        src = pol.get("source", "")
        if src.startswith("file:"):
            path = src[len("file:"):]
            in_image = path.startswith(IMAGE_POLICY_DIR) and path[len(IMAGE_POLICY_DIR):] in IMAGE_POLICIES
            if not in_image and not any(path.startswith(m) for m in mounts):
                p.append(f"policies.{name}: {path} is neither shipped in the image nor on a mount")
        elif not src.startswith("oci://"):
            p.append(f"policies.{name}: source {src!r} is neither file: nor oci://")
    return p


def check_cilium(objs: list[dict], pod_labels: dict) -> list[str]:
    p = []
    for lrp in find(objs, "CiliumLocalRedirectPolicy"):
        spec = lrp["spec"]
        sel = spec.get("redirectBackend", {}).get("localEndpointSelector", {}).get("matchLabels", {})
        if not sel or any(pod_labels.get(k) != v for k, v in sel.items()):
            p.append(f"LRP {lrp['metadata']['name']} selects {sel}, not zonegate's pods {pod_labels}")
        ports = {(x["port"], x["protocol"]) for x in spec.get("redirectBackend", {}).get("toPorts", [])}
        if not {("53", "UDP"), ("53", "TCP")} <= ports:
            p.append(f"LRP {lrp['metadata']['name']} must redirect 53/UDP and 53/TCP: {ports}")
        if spec.get("skipRedirectFromBackend") is not True:
            p.append(f"LRP {lrp['metadata']['name']}: without skipRedirectFromBackend zonegate's "
                     "own queries to kube-dns come back to zonegate")
    for cnp in find(objs, "CiliumNetworkPolicy"):
        for i, rule in enumerate(cnp["spec"].get("egress", [])):
            sels = [s.get("matchLabels", {}) for s in rule.get("toEndpoints", [])]
            to_dns = any(s.get("k8s-app") == "kube-dns" for s in sels)
            to_us = any(all(s.get(k) == v for k, v in pod_labels.items()) for s in sels)
            if to_dns and not to_us:
                p.append(f"CNP {cnp['metadata']['name']} egress[{i}] allows kube-dns but not "
                         f"zonegate's pods {pod_labels}: lookups break under the redirect")
    return p


# ---------------------------------------------------------------- zonegate itself

class Zonegate:
    def __init__(self, tmp: Path) -> None:
        self.bin = Path(os.environ.get("ZONEGATE_BIN", "target/debug/zonegate"))
        if not self.bin.is_absolute():
            self.bin = REPO / self.bin
        self.policy_dir = os.environ.get("ZONEGATE_WASM_DIR")
        self.tmp = tmp

    def missing_policies(self) -> list[str]:
        """The policies the image ships must be what scripts/build-policies.sh builds."""
        d = Path(self.policy_dir)
        return [f"{d / n} does not exist (deploy/Dockerfile ships it)" for n in sorted(IMAGE_POLICIES)
                if not (d / n).is_file()]

    def missing(self) -> str:
        if not (self.bin.is_file() and os.access(self.bin, os.X_OK)):
            return (f"no zonegate binary at {self.bin}: build it (cargo build -p zonegate) "
                    "or set ZONEGATE_BIN")
        return ""

    def run(self, *args: str) -> tuple[int, str, str]:
        out = subprocess.run([str(self.bin), *args], capture_output=True, text=True)
        return out.returncode, out.stdout, out.stderr

    def check(self, name: str, text: str) -> list[str]:
        if self.policy_dir:
            # The image's policy directory is this directory here.
            text = text.replace("file:" + IMAGE_POLICY_DIR, "file:" + self.policy_dir.rstrip("/") + "/")
        f = self.tmp / (re.sub(r"[^A-Za-z0-9_.-]", "_", name) + ".toml")
        f.write_text(text)
        rc, out, err = self.run("check", str(f))
        if rc != 0:
            return [f"`zonegate check {f}` exited {rc}:", *(out + err).strip().splitlines()]
        return []

    def import_aks(self, name: str, text: str, args: list[str]) -> tuple[str | None, list[str]]:
        f = self.tmp / (re.sub(r"[^A-Za-z0-9_.-]", "_", name) + ".json")
        f.write_text(text)
        extra = []
        for flag in ("--cluster-dns", "--vnet-dns"):
            if flag in args:
                extra += [flag, args[args.index(flag) + 1]]
        rc, out, err = self.run("import-aks", str(f), *extra)
        if rc != 0:
            return None, [f"`zonegate import-aks {f} {' '.join(extra)}` exited {rc}:",
                          *(out + err).strip().splitlines()]
        return out, []


# ---------------------------------------------------------------- the dashboard

def check_dashboard() -> list[str]:
    try:
        dash = json.loads(DASHBOARD.read_text())
    except (OSError, ValueError) as e:
        return [f"{DASHBOARD}: {e}"]
    p, used, ids = [], set(), []

    def panels(ps):
        for x in ps:
            yield x
            yield from panels(x.get("panels", []))

    for panel in panels(dash.get("panels", [])):
        ids.append(panel.get("id"))
        for t in panel.get("targets", []):
            names = set(re.findall(r"\b((?:coredns|zonegate)_[a-z_]+)", t.get("expr", "")))
            used |= {re.sub(r"_(bucket|sum|count)$", "", n) for n in names}
    for var in dash.get("templating", {}).get("list", []):
        used |= {re.sub(r"_(bucket|sum|count)$", "", n)
                 for n in re.findall(r"\b((?:coredns|zonegate)_[a-z_]+)", json.dumps(var.get("query", "")))}
    known = CORE_METRICS | ZONEGATE_METRICS | OTHER_METRICS
    if unknown := sorted(used - known):
        p.append(f"queries metrics zonegate does not export: {unknown}")
    if unused := sorted((CORE_METRICS | ZONEGATE_METRICS) - used):
        p.append(f"does not show: {unused}")
    if len(ids) != len(set(ids)):
        p.append("panel ids are not unique")
    return p


# ---------------------------------------------------------------- main

def render_all(r: Results, tmp: Path) -> dict[str, list[dict]]:
    rendered: dict[str, list[dict]] = {}
    jobs = [(name, lambda d=d: render(d)) for name, d in targets().items()]
    podmonitor = KUSTOMIZE / "components" / "podmonitor"
    jobs += [(f"{name}+podmonitor", lambda d=d: render_with_component(d, podmonitor, tmp))
             for name, d in targets().items() if name.startswith("overlays/") and name.count("/") == 1]
    for name, job in jobs:
        try:
            rendered[name] = job()
            r.record(f"render  {name}", [])
        except RuntimeError as e:
            r.record(f"render  {name}", [str(e)])
    return rendered


class ConfigChecks:
    """The config each DaemonSet mounts: readable, in step with its manifest, accepted by zonegate.
    zonegate runs once per distinct input (the +podmonitor renders repeat the overlays')."""

    def __init__(self, r: Results, zg: Zonegate) -> None:
        self.r, self.zg = r, zg
        self.configs: dict[str, dict] = {}  # target -> parsed native config
        self.checked: dict[str, list[str]] = {}
        self.imported: dict[tuple, tuple[str | None, list[str]]] = {}

    def run(self, name: str, objs: list[dict], ds: dict) -> None:
        template = ds["spec"]["template"]
        args = zonegate_container(template["spec"]).get("args", [])
        arg = config_arg(zonegate_container(template["spec"]))
        if not arg:
            self.r.record(f"config  {name}", ["zonegate runs with neither --config nor --aks-config"])
            return
        flag, path = arg
        text, why = mounted_file(objs, template["spec"], path)
        if text is not None and flag == "--aks-config":
            text, why = self.import_aks(name, text, args)
        if text is None:
            if why:
                self.r.record(f"config  {name}: {path}", [why])
            return
        try:
            cfg = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            self.r.record(f"config  {name}: {path}", [f"not TOML: {e}"])
            return
        self.configs[name] = cfg
        self.r.record(f"config  {name}: {path} agrees with the manifest",
                      check_native_config(cfg, objs, template))
        if text not in self.checked:
            self.checked[text] = [self.zg.missing()] if self.zg.missing() else self.zg.check(name, text)
            self.r.record(f"zonegate check {name}: {path}", self.checked[text])

    def import_aks(self, name: str, text: str, args: list[str]) -> tuple[str | None, str]:
        """The native TOML for an AKS localdnsconfig.json; a failure is recorded here."""
        try:
            json.loads(text)
        except ValueError as e:
            return None, f"not JSON: {e}"
        key = (text, tuple(args))
        if key not in self.imported:
            missing = self.zg.missing()
            self.imported[key] = (None, [missing]) if missing else self.zg.import_aks(name, text, args)
            self.r.record(f"zonegate import-aks {name}", self.imported[key][1])
        return self.imported[key][0], ""

    def variants(self) -> None:
        def without_sources(cfg: dict) -> dict:
            c = json.loads(json.dumps(cfg))
            for pol in c.get("policies", {}).values():
                pol.pop("source", None)
            return c

        for variant, original in VARIANTS.items():
            if variant in self.configs and original in self.configs:
                same = without_sources(self.configs[variant]) == without_sources(self.configs[original])
                self.r.record(f"variant {variant} = {original} but for policy sources",
                              [] if same else ["the configs differ in more than policies.*.source"])


def check_policies_configmap(base_ds: dict | None, tmp: Path) -> list[str]:
    """The README's way to ship your own policies: binaryData, under the name the DaemonSet mounts."""
    wasm = tmp / "policies"
    wasm.mkdir()
    (wasm / "my_policy.wasm").write_bytes(b"\0asm\x0d\x00\x01\x00\xff\xfe")
    out = subprocess.run(["kubectl", "create", "configmap", "zonegate-policies", "-n", "kube-system",
                          f"--from-file={wasm}", "--dry-run=client", "-o", "yaml"],
                         capture_output=True, text=True)
    if out.returncode:
        return [out.stderr.strip()]
    cm = yaml.safe_load(out.stdout)
    volumes = base_ds["spec"]["template"]["spec"]["volumes"] if base_ds else []
    p = check_schemas([cm])[0]
    if "my_policy.wasm" not in cm.get("binaryData", {}):
        p.append("the policy is not in binaryData")
    if cm["metadata"]["name"] not in [v["configMap"]["name"] for v in volumes if "configMap" in v]:
        p.append(f"the DaemonSet mounts no ConfigMap named {cm['metadata']['name']}")
    return p


def main() -> int:
    r = Results()
    print(f"Kubernetes schemas: kubernetes-validate {kv.__version__}, versions {', '.join(KUBE_VERSIONS)}")
    with tempfile.TemporaryDirectory(prefix="zonegate-deploy-") as t:
        tmp = Path(t)
        zg = Zonegate(tmp)
        rendered = render_all(r, tmp)
        base_ds = next(iter(find(rendered.get("base", []), "DaemonSet", "zonegate")), None)
        pod_labels = base_ds["spec"]["template"]["metadata"]["labels"] if base_ds else {"k8s-app": "zonegate"}
        configs = ConfigChecks(r, zg)
        for name, objs in rendered.items():
            problems, skipped = check_schemas(objs)
            r.record(f"schema  {name}", problems, f"{len(objs) - len(skipped)} validated"
                     + (f"; skipped, no schema: {', '.join(skipped)}" if skipped else ""))
            if p := check_cilium(objs, pod_labels):
                r.record(f"cilium  {name}", p)
            for ds in find(objs, "DaemonSet", "zonegate"):
                r.record(f"daemonset {name}", check_daemonset(ds))
                if name != "base":  # the base leaves the config to the overlays
                    configs.run(name, objs, ds)
        configs.variants()
        r.record(f"dashboard {DASHBOARD.relative_to(REPO)}", check_dashboard())
        if zg.policy_dir:
            r.record(f"image policies built in {zg.policy_dir}", zg.missing_policies())
        r.record("policies ConfigMap from `kubectl create configmap --from-file`",
                 check_policies_configmap(base_ds, tmp))
        if hadolint := os.environ.get("HADOLINT"):
            out = subprocess.run([hadolint, str(DEPLOY / "Dockerfile")], capture_output=True, text=True)
            r.record("hadolint deploy/Dockerfile",
                     (out.stdout + out.stderr).strip().splitlines() if out.returncode else [])

    print(f"\nvalidate: {r.passed} passed, {r.failed} failed")
    return 1 if r.failed else 0


if __name__ == "__main__":
    sys.exit(main())
