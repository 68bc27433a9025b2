#!/usr/bin/env python3
"""Every YAML file under deploy/ (docs/cluster.md): valid YAML, and the fields each must have.

- Kubernetes manifests: apiVersion, kind, metadata.name; the pod's emptyDir of medium
  Memory mounted at /dev/shm in every container; the PodMonitor's selector matching the
  pod's labels and its port a named port of the pod; the agent's remote_write URL the
  central Service's /api/v1/write; the central's ConfigMap holding deploy/cluster/rules.yml
  verbatim and referencing it; the flags each Prometheus needs.
- Prometheus configs and rules: `promtool check config` / `promtool check rules`, the
  agent's with --agent. Debian's promtool is built without Kubernetes discovery, so the
  in-cluster agent config is checked with its kubernetes_sd_configs replaced by a static
  target (its relabeling is asserted field by field above).

Exit 77 (skipped) without PyYAML (python3-yaml) or promtool.
usage: deploy_test.py DEPLOY_DIR
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile

failures = []


def check(cond, msg):
    if not cond:
        failures.append(msg)
        print("FAIL: " + msg)
    return cond


def docs_of(path):
    import yaml
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def promtool(*args):
    r = subprocess.run(["promtool", "check", *args], capture_output=True, text=True)
    check(r.returncode == 0, "promtool check %s: %s%s" % (" ".join(args), r.stdout, r.stderr))


def one(docs, kind, path):
    found = [d for d in docs if d.get("kind") == kind]
    check(len(found) == 1, "%s: want one %s, found %d" % (path, kind, len(found)))
    return found[0] if found else {}


def args_of(deployment):
    return deployment["spec"]["template"]["spec"]["containers"][0].get("args", [])


def mounted_config(deployment, configmap, path):
    """The directory where `deployment` mounts ConfigMap `configmap`."""
    spec = deployment["spec"]["template"]["spec"]
    vols = [v["name"] for v in spec.get("volumes", []) if v.get("configMap", {}).get("name") == configmap]
    check(len(vols) == 1, "%s: no volume of ConfigMap %s" % (path, configmap))
    mounts = [m["mountPath"] for m in spec["containers"][0].get("volumeMounts", []) if vols and m["name"] == vols[0]]
    check(len(mounts) == 1, "%s: ConfigMap %s not mounted" % (path, configmap))
    return mounts[0] if mounts else None


def main():
    deploy = sys.argv[1]
    try:
        import yaml
    except ImportError:
        print("SKIP: PyYAML is missing (apt-get install python3-yaml)")
        return 77
    if not shutil.which("promtool"):
        print("SKIP: promtool is missing (apt-get install prometheus)")
        return 77
    tmp = tempfile.mkdtemp(prefix="deploy-test.")

    # Every YAML file parses; every Kubernetes document names itself.
    files = {}
    for dirpath, _, names in os.walk(deploy):
        for n in sorted(names):
            if n.endswith((".yaml", ".yml")):
                p = os.path.join(dirpath, n)
                files[os.path.relpath(p, deploy)] = docs_of(p)
    for want in ("pod.yaml", "prometheus.yml", "cluster/central.yml", "cluster/rules.yml",
                 "k8s/namespace.yaml", "k8s/podmonitor.yaml", "k8s/prometheus-agent.yaml",
                 "k8s/prometheus-central.yaml"):
        check(want in files, "deploy/%s is missing" % want)
    for path, docs in files.items():
        check(docs, "%s: empty" % path)
        if path.startswith("k8s/") or path == "pod.yaml":
            for d in docs:
                check(isinstance(d.get("apiVersion"), str) and isinstance(d.get("kind"), str)
                      and d.get("metadata", {}).get("name"),
                      "%s: a document without apiVersion, kind or metadata.name: %s" % (path, str(d)[:80]))

    # The engine pod: an emptyDir in memory at /dev/shm in both containers.
    pod = files["pod.yaml"][0]
    check(pod["apiVersion"] == "v1" and pod["kind"] == "Pod", "pod.yaml: not a v1 Pod")
    shm_vols = [v["name"] for v in pod["spec"]["volumes"] if (v.get("emptyDir") or {}).get("medium") == "Memory"]
    check(len(shm_vols) == 1, "pod.yaml: want one emptyDir of medium Memory, found %s" % shm_vols)
    containers = pod["spec"]["containers"]
    check(len(containers) == 2, "pod.yaml: want the engine and the exporter sidecar")
    for c in containers:
        mounts = [m for m in c.get("volumeMounts", []) if shm_vols and m["name"] == shm_vols[0]]
        check(len(mounts) == 1 and mounts[0]["mountPath"] == "/dev/shm",
              "pod.yaml: container %s does not mount the Memory emptyDir at /dev/shm" % c["name"])
        args = c.get("args", [])
        check("--shm.dir=/dev/shm" in args, "pod.yaml: container %s lacks --shm.dir=/dev/shm" % c["name"])
    prefixes = {a for c in containers for a in c.get("args", []) if a.startswith("--shm.prefix=")}
    check(len(prefixes) == 1, "pod.yaml: engine and exporter disagree on --shm.prefix: %s" % prefixes)
    exporter = [c for c in containers if c.get("command", [""])[0] == "shmetrics-exporter"]
    check(len(exporter) == 1, "pod.yaml: no shmetrics-exporter container")
    ports = {p["name"]: p["containerPort"] for c in containers for p in c.get("ports", []) if "name" in p}
    pod_labels = pod["metadata"].get("labels", {})
    check(ports.get("metrics") == 9400 and exporter and "--web.listen-address=:9400" in exporter[0]["args"],
          "pod.yaml: the exporter's port named metrics is not 9400 where it listens")

    # The PodMonitor selects that pod and its metrics port.
    pm = files["k8s/podmonitor.yaml"][0]
    check(pm["apiVersion"] == "monitoring.coreos.com/v1" and pm["kind"] == "PodMonitor",
          "podmonitor.yaml: not a monitoring.coreos.com/v1 PodMonitor")
    sel = pm["spec"]["selector"].get("matchLabels", {})
    check(sel and all(pod_labels.get(k) == v for k, v in sel.items()),
          "podmonitor.yaml: selector %s does not match the pod's labels %s" % (sel, pod_labels))
    eps = pm["spec"]["podMetricsEndpoints"]
    check(eps, "podmonitor.yaml: no podMetricsEndpoints")
    for ep in eps:
        check(ep.get("port") in ports, "podmonitor.yaml: port %s is not a named port of the pod %s" % (ep.get("port"), list(ports)))
        check(ep.get("path", "/metrics") == "/metrics", "podmonitor.yaml: path %s" % ep.get("path"))

    # The central Prometheus: receiver on, rules in its ConfigMap, a Service to write to.
    ns = files["k8s/namespace.yaml"][0]["metadata"]["name"]
    cdocs = files["k8s/prometheus-central.yaml"]
    ccm, cdep, csvc = (one(cdocs, k, "prometheus-central.yaml") for k in ("ConfigMap", "Deployment", "Service"))
    for d in (ccm, cdep, csvc):
        check(d["metadata"].get("namespace") == ns, "prometheus-central.yaml: %s not in namespace %s" % (d["kind"], ns))
    cargs = args_of(cdep)
    check("--web.enable-remote-write-receiver" in cargs, "prometheus-central.yaml: no --web.enable-remote-write-receiver")
    cdir = mounted_config(cdep, ccm["metadata"]["name"], "prometheus-central.yaml")
    check("--config.file=%s/prometheus.yml" % cdir in cargs, "prometheus-central.yaml: --config.file is not the ConfigMap's prometheus.yml")
    ccfg = yaml.safe_load(ccm["data"]["prometheus.yml"])
    check("rules.yml" in ccfg.get("rule_files", []), "prometheus-central.yaml: prometheus.yml does not reference rules.yml")
    with open(os.path.join(deploy, "cluster", "rules.yml")) as f:
        check(ccm["data"].get("rules.yml") == f.read(),
              "prometheus-central.yaml: its rules.yml differs from deploy/cluster/rules.yml (copy it over)")
    check(csvc["spec"]["selector"] == cdep["spec"]["template"]["metadata"]["labels"],
          "prometheus-central.yaml: the Service does not select the Deployment's pods")
    svc_port = csvc["spec"]["ports"][0]["port"]
    os.makedirs(os.path.join(tmp, "central"))
    for k, v in ccm["data"].items():
        with open(os.path.join(tmp, "central", k), "w") as f:
            f.write(v)
    promtool("config", os.path.join(tmp, "central", "prometheus.yml"))
    promtool("rules", os.path.join(tmp, "central", "rules.yml"))

    # The agent: agent mode, the pods of the PodMonitor, writing to the central Service.
    adocs = files["k8s/prometheus-agent.yaml"]
    acm, adep = one(adocs, "ConfigMap", "prometheus-agent.yaml"), one(adocs, "Deployment", "prometheus-agent.yaml")
    sa = one(adocs, "ServiceAccount", "prometheus-agent.yaml")
    role = one(adocs, "ClusterRole", "prometheus-agent.yaml")
    check(adep["spec"]["template"]["spec"].get("serviceAccountName") == sa["metadata"]["name"],
          "prometheus-agent.yaml: the Deployment does not run as its ServiceAccount")
    check(any("pods" in r["resources"] and {"list", "watch"} <= set(r["verbs"]) for r in role["rules"]),
          "prometheus-agent.yaml: the ClusterRole cannot list and watch pods")
    aargs = args_of(adep)
    check("--enable-feature=agent" in aargs, "prometheus-agent.yaml: not in agent mode (--enable-feature=agent)")
    adir = mounted_config(adep, acm["metadata"]["name"], "prometheus-agent.yaml")
    check("--config.file=%s/prometheus.yml" % adir in aargs, "prometheus-agent.yaml: --config.file is not the ConfigMap's prometheus.yml")
    acfg = yaml.safe_load(acm["data"]["prometheus.yml"])
    want_url = "http://%s.%s.svc:%d/api/v1/write" % (csvc["metadata"]["name"], ns, svc_port)
    urls = [rw["url"] for rw in acfg.get("remote_write", [])]
    check(urls == [want_url], "prometheus-agent.yaml: remote_write %s, want [%s]" % (urls, want_url))
    job = acfg["scrape_configs"][0]
    keep = {r["source_labels"][0]: r["regex"] for r in job.get("relabel_configs", []) if r.get("action") == "keep"}
    for k, v in sel.items():
        label = "__meta_kubernetes_pod_label_" + re.sub(r"[^a-zA-Z0-9_]", "_", k)
        check(label in keep and re.fullmatch(keep[label], v),
              "prometheus-agent.yaml: does not keep the pods the PodMonitor selects (%s=%s)" % (k, v))
    check(re.fullmatch(keep.get("__meta_kubernetes_pod_container_port_name", "^$"), "metrics"),
          "prometheus-agent.yaml: does not keep the port named metrics")
    targets = {r.get("target_label") for r in job.get("relabel_configs", [])}
    check({"node", "pod"} <= targets, "prometheus-agent.yaml: no node / pod target labels to keep engines apart")
    job.pop("kubernetes_sd_configs")
    job["static_configs"] = [{"targets": ["engine-sim:9400"]}]
    with open(os.path.join(tmp, "agent.yml"), "w") as f:
        yaml.safe_dump(acfg, f)
    promtool("config", "--agent", os.path.join(tmp, "agent.yml"))

    # deploy/cluster: the central config and rules as they are, the agent template filled in.
    promtool("config", os.path.join(deploy, "prometheus.yml"))
    promtool("config", os.path.join(deploy, "cluster", "central.yml"))
    promtool("rules", os.path.join(deploy, "cluster", "rules.yml"))
    check("rules.yml" in files["cluster/central.yml"][0].get("rule_files", []),
          "cluster/central.yml does not reference rules.yml")
    with open(os.path.join(deploy, "cluster", "agent.yml.in")) as f:
        agent = f.read()
    for k, v in {"@NODE@": "node-1", "@TARGET@": "127.0.0.1:9400", "@CENTRAL@": "10.0.0.1:9090",
                 "@SCRAPE_INTERVAL@": "1s"}.items():
        check(k in agent, "cluster/agent.yml.in has no %s" % k)
        agent = agent.replace(k, v)
    check("@" not in re.sub(r"#.*", "", agent), "cluster/agent.yml.in: a placeholder left unfilled")
    with open(os.path.join(tmp, "node-agent.yml"), "w") as f:
        f.write(agent)
    promtool("config", "--agent", os.path.join(tmp, "node-agent.yml"))
    a = yaml.safe_load(agent)
    check(a["global"].get("external_labels", {}).get("node") == "node-1",
          "cluster/agent.yml.in: no external label node to keep the nodes apart")
    check([rw["url"] for rw in a.get("remote_write", [])] == ["http://10.0.0.1:9090/api/v1/write"],
          "cluster/agent.yml.in: remote_write is not the central's /api/v1/write")

    shutil.rmtree(tmp, ignore_errors=True)
    if failures:
        print("%d failure(s)" % len(failures))
        return 1
    print("PASS: %d YAML files" % len(files))
    return 0


if __name__ == "__main__":
    sys.exit(main())
