#!/usr/bin/env python3
"""deploy/compose/compose.yaml against the Compose specification's JSON schema, and against
the rest of the repository (what `docker compose up` would only find out when it runs):

  compose_test.py REPO_ROOT COMPOSE_SPEC_SCHEMA

Debian's python3-yaml and python3-jsonschema (`make deps` installs them).
"""

import copy
import os
import re
import sys
import unittest

import jsonschema
import yaml

ROOT = None
SCHEMA = None


def load_yaml(path):
    with open(path) as f:
        return yaml.safe_load(f)


class ComposeTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.directory = os.path.join(ROOT, "deploy", "compose")
        cls.compose = load_yaml(os.path.join(cls.directory, "compose.yaml"))
        cls.validator = jsonschema.Draft202012Validator(SCHEMA)
        cls.services = cls.compose["services"]
        cls.nodes = {name: s for name, s in cls.services.items()
                     if name.startswith("fleettwin-")}

    def schema_errors(self, document):
        return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
                for e in self.validator.iter_errors(document)]

    def test_the_file_follows_the_compose_specification(self):
        self.assertEqual(self.schema_errors(self.compose), [])

    def test_the_schema_check_rejects_what_the_specification_does_not_allow(self):
        # The check above can fail: a misspelt key and a wrong type are both caught.
        bad = copy.deepcopy(self.compose)
        bad["services"]["kafka"]["restart_policy"] = "always"
        bad["services"]["fleettwin-1"]["ulimits"]["nofile"]["soft"] = [65536]
        errors = self.schema_errors(bad)
        self.assertTrue(any("restart_policy" in e for e in errors), errors)
        self.assertTrue(any(e.startswith("services/fleettwin-1/ulimits/nofile") for e in errors),
                        errors)

    def test_every_bind_mount_names_a_file_of_the_repository(self):
        for name, service in self.services.items():
            for volume in service.get("volumes", []):
                source = volume.split(":")[0]
                if source.startswith((".", "/")):
                    path = os.path.normpath(os.path.join(self.directory, source))
                    self.assertTrue(os.path.exists(path), f"{name}: {source} does not exist")
        build = self.services["fleettwin-1"]["build"]
        self.assertTrue(os.path.isfile(os.path.join(self.directory, build["context"],
                                                    build["dockerfile"])))

    def test_kafka_is_the_version_tools_kafka_pins_in_kraft_mode(self):
        with open(os.path.join(ROOT, "tools", "kafka", "pom.xml")) as f:
            pinned = re.search(r"<kafka.version>([^<]+)</kafka.version>", f.read()).group(1)
        kafka = self.services["kafka"]
        self.assertEqual(kafka["image"].rsplit(":", 1)[1], pinned)
        self.assertIn("controller", kafka["environment"]["KAFKA_PROCESS_ROLES"])

    def test_three_nodes_with_standbys_each_reachable_under_its_own_name(self):
        self.assertEqual(len(self.nodes), 3)
        ids = set()
        for name, node in self.nodes.items():
            env = node["environment"]
            ids.add(env["FLEETTWIN_NODE_ID"])
            self.assertEqual(env["FLEETTWIN_ADVERTISE_HOST"], name)
            self.assertEqual(node["hostname"], name)
            self.assertGreaterEqual(int(env["FLEETTWIN_STANDBY_REPLICAS"]), 1)
            self.assertEqual(env["FLEETTWIN_KAFKA"], "kafka:9092")
            self.assertEqual(node["depends_on"]["kafka"]["condition"], "service_healthy")
            self.assertIn("health", node["healthcheck"]["test"])
            data = [v for v in node["volumes"] if v.endswith(":/var/lib/fleettwin")]
            self.assertEqual(len(data), 1, f"{name} keeps its RocksDB in a volume of its own")
        self.assertEqual(len(ids), 3, "node ids are unique")

    def test_prometheus_scrapes_every_node_as_the_job_the_alert_rules_select(self):
        prometheus = self.services["prometheus"]
        mounts = dict(v.split(":")[:2] for v in prometheus["volumes"])
        self.assertIn(f"--config.file={mounts['./prometheus.yml']}", prometheus["command"])
        config = load_yaml(os.path.join(self.directory, "prometheus.yml"))
        job = next(j for j in config["scrape_configs"] if j["job_name"] == "fleettwin")
        targets = {t for c in job["static_configs"] for t in c["targets"]}
        port = self.nodes["fleettwin-1"]["environment"]["FLEETTWIN_METRICS"].rsplit(":", 1)[1]
        self.assertEqual(targets, {f"{name}:{port}" for name in self.nodes})
        rules = mounts["../prometheus/fleettwin-alerts.yml"]
        self.assertIn(rules, config["rule_files"])
        with open(os.path.join(ROOT, "deploy", "prometheus", "fleettwin-alerts.yml")) as f:
            self.assertIn('job="fleettwin"', f.read())

    def test_grafana_gets_the_data_source_and_dashboards_where_provisioning_looks(self):
        grafana = self.services["grafana"]
        mounts = dict(v.split(":")[:2] for v in grafana["volumes"])
        provisioning = load_yaml(os.path.join(
            ROOT, "deploy", "grafana", "provisioning", "dashboards", "fleettwin.yml"))
        self.assertEqual(mounts["../grafana/dashboards"],
                         provisioning["providers"][0]["options"]["path"])
        datasource = load_yaml(os.path.join(
            ROOT, "deploy", "grafana", "provisioning", "datasources", "fleettwin.yml"))
        url = datasource["datasources"][0]["url"]
        self.assertEqual(url, "http://prometheus:9090")
        self.assertIn("prometheus", self.services)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    ROOT = sys.argv[1]
    if not os.path.isfile(sys.argv[2]):
        sys.exit(f"{sys.argv[2]} is missing: `make deploy-tools` writes it")
    import json
    with open(sys.argv[2]) as f:
        SCHEMA = json.load(f)
    unittest.main(argv=sys.argv[:1], verbosity=2)
