"""Checks of the deployment files, run by scripts/check-ops (with the Python
of .venv/, where it installs PyYAML, kubernetes-validate and the Prometheus
Operator's models).

  check-deploy.py manifests OUT
      Copies the resources of Kubernetes itself in each of
      deploy/kubernetes/*.yaml (all but prometheus-scrape.yaml) to a file
      of the same name in OUT, for kubernetes-validate, and validates each
      PodMonitor against the Prometheus Operator's models, unknown fields
      refused. Any other custom resource is an error: nothing would check
      it.

  check-deploy.py configs CFPURGE
      Runs `CFPURGE check-config` on every configuration shipped, with the
      environment it would run with, and fails on an error or any warning.

  check-deploy.py jobs OUT
      Checks that every way of scraping cfpurge that ships gives the job
      label the alert rules select and their unit tests use, and writes
      OUT/scrape.yml: prometheus-scrape.yaml with its Kubernetes discovery
      replaced by a static target, for promtool (Debian's promtool is built
      without Kubernetes discovery).

  check-deploy.py rule OUT
      Runs the command docs/kubernetes.md shows to wrap config/alerts.yml
      in a PrometheusRule, validates the result against the Operator's
      models, checks that the page labels the PodMonitor as it labels the
      rule, and writes its rule groups to OUT/prometheusrule-groups.yml,
      for promtool check rules.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

KUBERNETES = Path("deploy/kubernetes")
SCRAPE = KUBERNETES / "prometheus-scrape.yaml"
ALERTS = Path("config/alerts.yml")
ALERT_TESTS = Path("config/alerts.test.yml")
DOCS = Path("docs/kubernetes.md")
# A Secret's value and a pod's name as Kubernetes would fill them in.
SAMPLE_TOKEN = "0f3c9a7d2b1e4f6a8c5d7e9f1a3b5c7d"
SAMPLE_POD_NAME = "cfpurge-5d8c7b9f6-x2x7k"


def fail(message):
    sys.exit(f"{message}")


def documents(path):
    try:
        return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    except yaml.YAMLError as e:
        fail(f"{path}: not YAML: {e}")


def manifests():
    return sorted(p for p in KUBERNETES.glob("*.yaml") if p != SCRAPE)


def operator_models():
    """The Prometheus Operator's monitoring.coreos.com/v1 models, strict."""
    # The generated models ignore unknown fields; refuse them instead, so
    # that a misspelt key (jobLable) fails rather than silently doing
    # nothing. The base class's configuration is inherited when the model
    # classes are created, hence before importing them.
    import cloudcoil.pydantic

    cloudcoil.pydantic.BaseModel.model_config["extra"] = "forbid"
    from cloudcoil.models.prometheus_operator import v1

    return v1


def check_manifests(out):
    import pydantic

    PodMonitor = operator_models().PodMonitor
    core, monitors = 0, 0
    for path in manifests():
        kept = []
        for doc in documents(path):
            kind, api = doc.get("kind"), doc.get("apiVersion", "")
            if kind == "PodMonitor" and api == "monitoring.coreos.com/v1":
                try:
                    PodMonitor.model_validate(doc)
                except pydantic.ValidationError as e:
                    fail(f"{path}: PodMonitor {doc['metadata'].get('name')}: {e}")
                monitors += 1
            elif "." in api.partition("/")[0] and not api.partition("/")[0].endswith(".k8s.io"):
                fail(f"{path}: {kind} ({api}) is a custom resource nothing here validates")
            else:
                kept.append(doc)
        # Under the same name, so that kubernetes-validate's messages name it.
        Path(out, path.name).write_text(yaml.safe_dump_all(kept, sort_keys=False))
        core += len(kept)
    print(f"{core} resources for kubernetes-validate in {out}, {monitors} PodMonitor(s) valid")


def env_value(path, entry):
    if "value" in entry:
        return entry["value"]
    source = entry.get("valueFrom", {})
    if "secretKeyRef" in source:
        return SAMPLE_TOKEN
    if source.get("fieldRef", {}).get("fieldPath") == "metadata.name":
        return SAMPLE_POD_NAME
    fail(f"{path}: env {entry['name']}: no sample value for {source}")


def config_argument(where, args):
    if "-c" not in args or args.index("-c") + 1 >= len(args):
        fail(f"{where}: the command {args} names no configuration file (-c FILE)")
    return args[args.index("-c") + 1]


def kubernetes_configs():
    """(name, configuration text, environment) of each workload's container."""
    for path in manifests():
        docs = documents(path)
        config_maps = {d["metadata"]["name"]: d.get("data", {}) for d in docs if d.get("kind") == "ConfigMap"}
        for doc in docs:
            if doc.get("kind") not in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
                continue
            pod = doc["spec"]["template"]["spec"]
            volumes = {v["name"]: v for v in pod.get("volumes", [])}
            for container in pod["containers"]:
                where = f"{path} {doc['kind']}/{doc['metadata']['name']} container {container['name']}"
                file = config_argument(where, container.get("args", []))
                folder, key = os.path.split(file)
                mount = next((m for m in container.get("volumeMounts", []) if m["mountPath"] == folder), None)
                if mount is None:
                    fail(f"{where}: nothing is mounted at {folder}, where {file} is read")
                source = volumes.get(mount["name"], {}).get("configMap", {}).get("name")
                if source not in config_maps or key not in config_maps[source]:
                    fail(f"{where}: {file} is not a key of a ConfigMap in {path}")
                env = {e["name"]: env_value(path, e) for e in container.get("env", [])}
                yield where, config_maps[source][key], env


def image_defaults():
    """The configuration file the image holds and its ENV, from the Dockerfile."""
    text = Path("Dockerfile").read_text().replace("\\\n", " ")
    copied = re.search(r"^COPY (config/\S+) /etc/cfpurge/cfpurge\.toml$", text, re.M)
    if not copied:
        fail("Dockerfile: no COPY of a configuration to /etc/cfpurge/cfpurge.toml")
    env = {}
    for line in re.findall(r"^ENV (.*)$", text, re.M):
        for pair in line.split():
            name, _, value = pair.partition("=")
            env[name] = value
    return Path(copied.group(1)).read_text(), env


def ecs_configs(image_config, image_env):
    path = Path("deploy/ecs/task-definition.json")
    task = json.loads(path.read_text())
    for container in task["containerDefinitions"]:
        where = f"{path} container {container['name']}"
        if config_argument(where, container.get("command", [])) != "/etc/cfpurge/cfpurge.toml":
            fail(f"{where}: reads a configuration the image does not hold")
        env = dict(image_env)
        env.update({e["name"]: e["value"] for e in container.get("environment", [])})
        env.update({s["name"]: SAMPLE_TOKEN for s in container.get("secrets", [])})
        yield where, image_config, env


def check_configs(binary):
    image_config, image_env = image_defaults()
    shipped = [(str(p), p.read_text(), {}) for p in sorted(Path("config").glob("*.toml"))]
    # The image as its Dockerfile's header runs it: with a token.
    shipped.append(("Dockerfile (with CFPURGE__HTTP__ENQUEUE_TOKEN)", image_config,
                    dict(image_env, CFPURGE__HTTP__ENQUEUE_TOKEN=SAMPLE_TOKEN)))
    shipped += list(kubernetes_configs())
    shipped += list(ecs_configs(image_config, image_env))
    scratch = Path(os.environ.get("TMPDIR", "/tmp"))
    bad = []
    for i, (where, text, env) in enumerate(shipped):
        file = Path(scratch, f"check-deploy-{os.getpid()}-{i}.toml")
        file.write_text(text)
        try:
            run = subprocess.run([binary, "check-config", "-c", str(file)], capture_output=True, text=True,
                                 env={"PATH": os.environ["PATH"], **env})
        finally:
            file.unlink()
        if run.returncode != 0 or run.stderr.strip():
            bad.append(f"{where} (exit {run.returncode}):\n{run.stderr.replace(str(file), 'the configuration')}")
    if bad:
        fail("check-config does not pass cleanly:\n" + "\n".join(bad))
    print(f"{len(shipped)} configurations pass check-config without a warning")


def check_jobs(out):
    # The rules' expressions only: their descriptions may name other jobs.
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    alerts = "\n".join(rule["expr"] for group in groups for rule in group["rules"])
    jobs = set(re.findall(r'job\s*=\s*"([^"]*)"', alerts))
    if len(jobs) != 1 or re.search(r"job\s*=~", alerts):
        fail(f"{ALERTS}: the rules should select one job by name, not {sorted(jobs) or 'none'}")
    job = jobs.pop()

    # The PodMonitor: the job is the value of the pod label jobLabel names.
    pod_labels = []
    port_names = set()
    for path in manifests():
        for doc in documents(path):
            if doc.get("kind") in ("Deployment", "StatefulSet"):
                template = doc["spec"]["template"]
                pod_labels.append((f"{path} {doc['kind']}", template["metadata"].get("labels", {})))
                port_names |= {p.get("name") for c in template["spec"]["containers"] for p in c.get("ports", [])}
    monitors = [(p, d) for p in manifests() for d in documents(p) if d.get("kind") == "PodMonitor"]
    if not monitors:
        fail(f"no PodMonitor in {KUBERNETES}")
    for path, monitor in monitors:
        spec = monitor["spec"]
        label = spec.get("jobLabel")
        if not label:
            fail(f"{path}: the PodMonitor has no jobLabel: its job would be <namespace>/<name>, not {job!r}")
        wanted = spec["selector"].get("matchLabels", {})
        for where, labels in pod_labels:
            if any(labels.get(k) != v for k, v in wanted.items()):
                fail(f"{path}: the PodMonitor's selector {wanted} does not select the pods of {where}")
            if labels.get(label) != job:
                fail(f"{path}: jobLabel {label}: the pods of {where} have {label}={labels.get(label)!r}, "
                     f"so their job is not {job!r}, which {ALERTS} selects")
        for endpoint in spec["podMetricsEndpoints"]:
            if endpoint.get("port") not in port_names:
                fail(f"{path}: the PodMonitor scrapes port {endpoint.get('port')!r}, which no container names")

    # The plain scrape configuration.
    scrape = yaml.safe_load(SCRAPE.read_text())
    names = [c["job_name"] for c in scrape["scrape_configs"]]
    if names != [job]:
        fail(f"{SCRAPE}: job_name {names}, where {ALERTS} selects {job!r}")
    for config in scrape["scrape_configs"]:
        for relabel in config.get("relabel_configs", []):
            if relabel.get("source_labels") == ["__meta_kubernetes_pod_container_port_name"] \
                    and relabel.get("action") == "keep" and relabel.get("regex") not in port_names:
                fail(f"{SCRAPE}: keeps the port {relabel.get('regex')!r}, which no container names")
        if "kubernetes_sd_configs" not in config:
            fail(f"{SCRAPE}: {config['job_name']} has no kubernetes_sd_configs")
        del config["kubernetes_sd_configs"]
        config["static_configs"] = [{"targets": ["127.0.0.1:9470"]}]
    Path(out, "scrape.yml").write_text(yaml.safe_dump(scrape, sort_keys=False))

    # The rules' unit tests feed the alerts that select the job series of
    # that job.
    tests = yaml.safe_load(ALERT_TESTS.read_text())
    series = [s["series"] for t in tests["tests"] for s in t.get("input_series", [])]
    for metric in ("up", "cfpurge_leader"):
        if not any(s.startswith(metric + "{") and f'job="{job}"' in s for s in series):
            fail(f"{ALERT_TESTS}: no {metric} series with job=\"{job}\"")
    print(f'job="{job}" everywhere: {ALERTS}, its tests, {len(monitors)} PodMonitor(s), {SCRAPE}')


def check_rule(out):
    """The documented command that wraps config/alerts.yml in a PrometheusRule."""
    import pydantic

    PrometheusRule = operator_models().PrometheusRule

    doc = DOCS.read_text()
    found = re.search(r"^ *(\{ printf '[^\n]*kind: PrometheusRule.*?)\| kubectl[^\n]*$", doc, re.M | re.S)
    if not found:
        fail(f"{DOCS}: no command that makes a PrometheusRule and pipes it to kubectl")
    command = found.group(1)
    run = subprocess.run(["bash", "-c", command], capture_output=True, text=True)
    if run.returncode != 0:
        fail(f"{DOCS}: the PrometheusRule command failed:\n{command}\n{run.stderr}")
    rule = yaml.safe_load(run.stdout)
    try:
        PrometheusRule.model_validate(rule)
    except pydantic.ValidationError as e:
        fail(f"{DOCS}: the PrometheusRule command makes an invalid PrometheusRule: {e}")
    if rule["spec"] != yaml.safe_load(ALERTS.read_text()):
        fail(f"{DOCS}: the PrometheusRule's spec is not {ALERTS}")
    # Prometheus selects the PodMonitor and the rule by the same label: the
    # page gives both the same one, or the rules would load and the target
    # never be scraped (CfpurgeAbsent for ever), or the other way round.
    labelled = re.search(r"^ *kubectl -n cfpurge label --overwrite podmonitor cfpurge (\S+)=(\S+)$", doc, re.M)
    if not labelled:
        fail(f"{DOCS}: no command that labels the PodMonitor for the Prometheus resource's selector")
    monitor_label = {labelled.group(1): labelled.group(2)}
    if rule["metadata"].get("labels") != monitor_label:
        fail(f"{DOCS}: the PodMonitor is labelled {monitor_label}, the PrometheusRule {rule['metadata'].get('labels')}")
    Path(out, "prometheusrule-groups.yml").write_text(yaml.safe_dump(rule["spec"], sort_keys=False))
    print(f"the PrometheusRule made as {DOCS} shows is valid and holds {ALERTS}; it and the PodMonitor are labelled {monitor_label}")


if __name__ == "__main__":
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    if command == "manifests" and len(sys.argv) == 3:
        check_manifests(sys.argv[2])
    elif command == "configs" and len(sys.argv) == 3:
        check_configs(sys.argv[2])
    elif command == "jobs" and len(sys.argv) == 3:
        check_jobs(sys.argv[2])
    elif command == "rule" and len(sys.argv) == 3:
        check_rule(sys.argv[2])
    else:
        fail(__doc__)
