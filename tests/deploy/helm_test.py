#!/usr/bin/env python3
"""The Helm chart helm/fleettwin: `helm lint --strict` and `helm template | kubeconform
-strict` for every values profile, against the Kubernetes and Prometheus Operator schemas
kept in the deploy cache (`make deploy-tools`), and what the chart must mean beyond its
schema (the StatefulSet's identity, probes, selectors, the NetworkPolicy, the rules):

  helm_test.py REPO_ROOT DEPLOY_CACHE FLEETTWIN_NODE_BINARY
"""

import os
import subprocess
import sys
import tempfile
import unittest

import yaml

ROOT = CACHE = NODE = None
KUBERNETES_VERSION = "1.34.3"
PROFILES = {
    # The defaults need a Kafka; the profiles name one.
    "default": ["--set", "kafka.bootstrap=kafka:9092", "--set", "insecure=true"],
    "dev": ["-f", "values-dev.yaml"],
    "production": ["-f", "values-production.yaml"],
}


def chart():
    return os.path.join(ROOT, "helm", "fleettwin")


def helm(*args):
    return subprocess.run([os.path.join(CACHE, "bin", "helm"), *args], cwd=chart(),
                          capture_output=True, text=True)


def template(*args):
    result = helm("template", "fleettwin", ".", "--namespace", "fleet", "--kube-version",
                  KUBERNETES_VERSION, *args)
    return result


def kubeconform(manifests):
    location = os.path.join(CACHE, "schemas", "kubernetes",
                            "{{ .Group }}/{{ .ResourceKind }}_{{ .ResourceAPIVersion }}.json")
    return subprocess.run([os.path.join(CACHE, "bin", "kubeconform"), "-strict", "-summary",
                           "-schema-location", location, "-"],
                          input=manifests, capture_output=True, text=True)


def render(profile, *extra):
    result = template(*PROFILES[profile], *extra)
    if result.returncode != 0:
        raise AssertionError(f"helm template ({profile}) failed: {result.stderr}")
    return result.stdout


def objects(manifests):
    return {(d["kind"], d["metadata"]["name"]): d
            for d in yaml.safe_load_all(manifests) if d}


def one(docs, kind):
    found = [d for (k, _), d in docs.items() if k == kind]
    assert len(found) == 1, f"{len(found)} {kind}"
    return found[0]


def matches(selector, labels):
    return all(labels.get(k) == v for k, v in selector.items())


class ChartTest(unittest.TestCase):
    def test_lint_is_clean_for_every_profile(self):
        for profile, args in PROFILES.items():
            result = helm("lint", "--strict", ".", "--kube-version", KUBERNETES_VERSION, *args)
            self.assertEqual(result.returncode, 0, f"{profile}: {result.stdout}{result.stderr}")

    def test_every_profile_renders_only_valid_kubernetes_objects(self):
        for profile in PROFILES:
            manifests = render(profile)
            result = kubeconform(manifests)
            self.assertEqual(result.returncode, 0, f"{profile}: {result.stdout}{result.stderr}")
            count = len(objects(manifests))
            self.assertIn(f"{count} resources found", result.stdout)
            self.assertIn(f"Valid: {count}, Invalid: 0, Errors: 0, Skipped: 0", result.stdout)

    def test_kubeconform_rejects_a_misspelt_field(self):
        # The validation above can fail: the schemas are strict.
        manifests = render("production", "--set-json",
                           'extraEnv=[{"name":"FLEETTWIN_LOG_LEVEL","valu":"debug"}]')
        result = kubeconform(manifests)
        self.assertNotEqual(result.returncode, 0, result.stdout)
        self.assertIn("additional properties 'valu' not allowed", result.stdout)

    def test_the_chart_refuses_what_it_cannot_run(self):
        result = template()
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("kafka.bootstrap is required", result.stderr)
        # Neither TLS nor an explicit insecure: the node would refuse to start.
        result = template("--set", "kafka.bootstrap=kafka:9092")
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("set tls.existingSecret", result.stderr)
        result = template(*PROFILES["dev"], "--set", "auth.existingSecret=keys")
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("auth.existingSecret needs tls.existingSecret", result.stderr)
        result = template(*PROFILES["dev"], "--set", "node.tls-cert=/x")
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("node.tls-cert is set by the chart", result.stderr)
        result = template(*PROFILES["dev"], "--set", "node.grpc=0.0.0.0:1")
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("node.grpc is set by the chart", result.stderr)
        result = template(*PROFILES["dev"], "--set", "antiAffinity=sometimes")
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("antiAffinity must be soft or hard", result.stderr)

    def test_production_statefulset_identity_storage_probes_and_placement(self):
        docs = objects(render("production"))
        sts = one(docs, "StatefulSet")
        spec = sts["spec"]
        pod = spec["template"]["spec"]
        self.assertEqual(spec["replicas"], 3)
        headless = docs[("Service", spec["serviceName"])]
        self.assertEqual(headless["spec"]["clusterIP"], "None")
        self.assertTrue(headless["spec"]["publishNotReadyAddresses"])
        container = pod["containers"][0]
        env = {e["name"]: e for e in container["env"]}
        self.assertEqual(env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"], "metadata.name")
        self.assertEqual(env["FLEETTWIN_NODE_ID"]["value"], "$(POD_NAME)")
        self.assertEqual(env["FLEETTWIN_ADVERTISE_HOST"]["value"],
                         f"$(POD_NAME).{spec['serviceName']}.$(POD_NAMESPACE).svc")
        # One volume per node for RocksDB, at the data directory's parent.
        self.assertEqual([t["metadata"]["name"] for t in spec["volumeClaimTemplates"]], ["data"])
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        self.assertEqual(mounts["data"], "/var/lib/fleettwin")
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        # TLS on every port: the probes run the CLI (the kubelet's gRPC probe has no TLS),
        # which reads the node's certificate from the same variables as the node.
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            command = container[probe]["exec"]["command"]
            self.assertEqual(command[:3], ["fleettwin", "--server", f"127.0.0.1:{ports['grpc']}"])
            self.assertIn("health", command)
        self.assertEqual(container["livenessProbe"]["exec"]["command"][-2:],
                         ["--service", "fleettwin.v1.NodeService"])
        self.assertNotIn("--service", container["readinessProbe"]["exec"]["command"])
        self.assertEqual(env["FLEETTWIN_TLS_CERT"]["value"], "/etc/fleettwin/tls/tls.crt")
        self.assertEqual(env["FLEETTWIN_TLS_CA"]["value"], "/etc/fleettwin/tls/ca.crt")
        self.assertEqual(env["FLEETTWIN_TLS_CLIENT_AUTH"]["value"], "require")
        self.assertNotIn("FLEETTWIN_INSECURE", env)
        self.assertEqual(env["FLEETTWIN_AUTH_JWKS"]["value"], "/etc/fleettwin/auth/jwks.json")
        self.assertEqual(env["FLEETTWIN_AUTH_AUDIENCE"]["value"], "fleettwin")
        monitor = one(docs, "ServiceMonitor")["spec"]["endpoints"][0]
        self.assertEqual(monitor["scheme"], "https")
        self.assertEqual(monitor["tlsConfig"]["ca"]["secret"],
                         {"name": "fleettwin-tls", "key": "ca.crt"})
        self.assertEqual(monitor["tlsConfig"]["serverName"], env["FLEETTWIN_TLS_SERVER_NAME"]["value"])
        labels = spec["template"]["metadata"]["labels"]
        required = pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        self.assertTrue(matches(required[0]["labelSelector"]["matchLabels"], labels))
        self.assertTrue(pod["securityContext"]["runAsNonRoot"])
        self.assertFalse(container["securityContext"]["allowPrivilegeEscalation"])
        self.assertTrue(container["securityContext"]["readOnlyRootFilesystem"])
        # TLS and token keys come from the Secrets the profile names.
        volumes = {v["name"]: v for v in pod["volumes"]}
        self.assertEqual(volumes["tls"]["secret"]["secretName"], "fleettwin-tls")
        self.assertEqual(volumes["auth"]["secret"]["secretName"], "fleettwin-auth")
        self.assertEqual(mounts["tls"], "/etc/fleettwin/tls")

    def test_every_selector_picks_the_nodes(self):
        for profile in PROFILES:
            docs = objects(render(profile))
            labels = one(docs, "StatefulSet")["spec"]["template"]["metadata"]["labels"]
            for (kind, name), doc in docs.items():
                if kind == "Service":
                    self.assertTrue(matches(doc["spec"]["selector"], labels), name)
                elif kind in ("PodDisruptionBudget", "ServiceMonitor"):
                    self.assertTrue(matches(doc["spec"]["selector"]["matchLabels"], labels), kind)
                elif kind == "NetworkPolicy":
                    self.assertTrue(matches(doc["spec"]["podSelector"]["matchLabels"], labels))

    def test_the_network_policy_denies_by_default_and_opens_only_the_ports_used(self):
        docs = objects(render("production"))
        policy = one(docs, "NetworkPolicy")["spec"]
        self.assertEqual(sorted(policy["policyTypes"]), ["Egress", "Ingress"])
        container = one(docs, "StatefulSet")["spec"]["template"]["spec"]["containers"][0]
        names = {p["name"] for p in container["ports"]}
        opened = {p["port"] for rule in policy["ingress"] for p in rule["ports"]}
        self.assertEqual(opened, names)
        cluster = next(r for r in policy["ingress"] if r["ports"][0]["port"] == "cluster")
        self.assertEqual(len(cluster["from"]), 1, "only the other nodes reach the cluster port")
        metrics = next(r for r in policy["ingress"] if r["ports"][0]["port"] == "metrics")
        self.assertEqual(metrics["from"][0]["namespaceSelector"]["matchLabels"],
                         {"kubernetes.io/metadata.name": "monitoring"})
        egress_ports = {p["port"] for rule in policy["egress"] for p in rule["ports"]}
        self.assertEqual(egress_ports, {9093, 4242, 50051, 53})

    def test_the_node_accepts_its_configuration_file(self):
        for profile in PROFILES:
            docs = objects(render(profile, "--set-file",
                                  f"config.models={ROOT}/deploy/models.toml"))
            data = one(docs, "ConfigMap")["data"]
            self.assertIn("models = \"/etc/fleettwin/config/models.toml\"", data["node.toml"])
            with open(os.path.join(ROOT, "deploy", "models.toml")) as f:
                self.assertEqual(data["models.toml"], f.read())
            with tempfile.TemporaryDirectory() as directory:
                # The ConfigMap's files, where node.toml names them (the mount point).
                for name, text in data.items():
                    with open(os.path.join(directory, name), "w") as f:
                        f.write(text.replace("/etc/fleettwin/config/", directory + "/"))
                # The file is read before --help is answered: an unknown key exits 2.
                result = subprocess.run(
                    [NODE, "--config", os.path.join(directory, "node.toml"), "--help"],
                    capture_output=True, text=True)
                self.assertEqual(result.returncode, 0, f"{profile}: {result.stderr}")
        with tempfile.NamedTemporaryFile("w", suffix=".toml") as f:
            f.write("standby-replica = 1\n")
            f.flush()
            result = subprocess.run([NODE, "--config", f.name, "--help"],
                                    capture_output=True, text=True)
            self.assertEqual(result.returncode, 2, result.stderr)

    def test_prometheus_operator_objects_carry_the_tested_alert_rules(self):
        docs = objects(render("production"))
        rule = one(docs, "PrometheusRule")
        with open(os.path.join(ROOT, "deploy", "prometheus", "fleettwin-alerts.yml")) as f:
            self.assertEqual(rule["spec"], yaml.safe_load(f))
        monitor = one(docs, "ServiceMonitor")
        endpoint = monitor["spec"]["endpoints"][0]
        self.assertEqual(endpoint["port"], "metrics")
        self.assertIn({"targetLabel": "job", "replacement": "fleettwin"}, endpoint["relabelings"])
        self.assertNotIn(("PrometheusRule", "fleettwin"), objects(render("dev")))

    def test_dev_is_plaintext_by_explicit_choice_with_grpc_probes(self):
        container = one(objects(render("dev")), "StatefulSet")["spec"]["template"]["spec"][
            "containers"][0]
        env = {e["name"]: e for e in container["env"]}
        self.assertEqual(env["FLEETTWIN_INSECURE"]["value"], "true")
        self.assertNotIn("FLEETTWIN_TLS_CERT", env)
        self.assertEqual(container["readinessProbe"]["grpc"]["port"], 50051)

    def test_dev_is_one_small_node_without_standbys_or_budget(self):
        docs = objects(render("dev"))
        self.assertEqual(one(docs, "StatefulSet")["spec"]["replicas"], 1)
        self.assertNotIn("PodDisruptionBudget", {k for k, _ in docs})
        self.assertIn("standby-replicas = 0", one(docs, "ConfigMap")["data"]["node.toml"])


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    ROOT, CACHE, NODE = sys.argv[1:4]
    for tool in ("helm", "kubeconform"):
        if not os.access(os.path.join(CACHE, "bin", tool), os.X_OK):
            sys.exit(f"{CACHE}/bin/{tool} is missing: `make deploy-tools` builds it")
    unittest.main(argv=sys.argv[:1], verbosity=2)
