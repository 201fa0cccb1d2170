"""Kubernetes: the consumer's manifests, and the connector as Strimzi resources, made from
the watched-tables file and the settings. ``cdc deploy kubernetes`` and
``cdc connector render --format strimzi`` print them."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from cdc.connect import render_config
from cdc.deploy import Target, consumer_env, grace_period_s, served_port
from cdc.deploy import replicated as replicated_mode
from cdc.deploy.alerts import monitoring_manifests
from cdc.deploy.yaml_out import dump_all
from cdc.errors import ConfigError
from cdc.settings import Settings
from cdc.stack import config
from cdc.stack.versions import versions
from cdc.tables.config import Encoding, WatchedTables
from cdc.tables.workloads import WorkloadOptions

STRIMZI_API = "kafka.strimzi.io/v1"
CONFIG_DIR = "/etc/cdc/config"
SECRETS_DIR = "/etc/cdc/secrets"
# The consumer's Secret: its keys are file names under CDC_SECRETS_DIR, as pydantic-settings
# looks them up (cdc_pg_password, and any other secret setting). Kafka Connect reads the
# Debezium password from a Secret of its own, which the consumer never sees.
SECRET_NAME = "cdc"  # noqa: S105 - a name
DEBEZIUM_SECRET_NAME = "cdc-debezium"  # noqa: S105 - a name
DEBEZIUM_PASSWORD_KEY = "password"  # noqa: S105 - a key
# Worker settings Strimzi refuses in spec.config, or takes as spec fields.
_NOT_IN_SPEC_CONFIG = ("bootstrap.servers", "listeners", "rest.", "plugin.path", "group.id")


def _meta(name: str, target: Target, **extra: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if target.namespace:
        meta["namespace"] = target.namespace
    return meta | extra


def kafka_connector(
    watched: WatchedTables, settings: Settings, cluster: str, replicated: bool = False
) -> dict[str, Any]:
    """The connector as a Strimzi ``KafkaConnector``: the config ``cdc connector apply``
    puts, with the class and task count moved to where Strimzi wants them; ``replicated``:
    its topics made as the local cluster's are."""
    # Always the reference: a password in the resource would sit in YAML and in etcd.
    by_reference = settings.model_copy(update={"debezium_password_inline": False})
    connector = dict(render_config(watched, by_reference))
    if replicated:
        connector |= replicated_mode.topic_replication(watched)
    cls = connector.pop("connector.class")
    tasks = int(connector.pop("tasks.max"))
    return {
        "apiVersion": STRIMZI_API,
        "kind": "KafkaConnector",
        "metadata": {"name": watched.connector.name, "labels": {"strimzi.io/cluster": cluster}},
        "spec": {
            "class": cls,
            "tasksMax": tasks,
            # A task that fails (PostgreSQL restarted, publication not there yet) is
            # restarted with backoff instead of staying FAILED.
            "autoRestart": {"enabled": True},
            "config": connector,
        },
    }


def kafka_connect(watched: WatchedTables, target: Target) -> dict[str, Any]:
    """A Strimzi ``KafkaConnect`` cluster that runs the connector as the local stack's worker
    does: the same converters, offset flush, the ``env`` config provider for the Debezium
    password (from the Secret), and the pinned Debezium plugin (for Avro also the Apicurio
    converter and our transforms), built into ``connect_image``. Replicated, its workers and
    the rebalance delay are the local cluster's."""
    v = versions()
    topology = replicated_mode.TOPOLOGY if target.replicated else None
    worker = config.connect_worker_properties(
        bootstrap=target.kafka_bootstrap,
        rest_host="0.0.0.0",  # noqa: S104 - Strimzi sets its own listeners
        rest_port=8083,
        plugin_path=None,
        rebalance_delay_ms=topology.rebalance_delay_ms if topology else None,
        exactly_once=watched.connector.exactly_once,
    )
    # Connect's own topics: the local stack's single-broker sizes are left out, and
    # production clusters replicate them as the broker defaults say; replicated, with the
    # cluster's factor, so that a cluster too small is refused rather than given one copy.
    factor = str(topology.replication.factor) if topology else "-1"
    spec_config = {
        k: val
        for k, val in worker.items()
        if not k.startswith(_NOT_IN_SPEC_CONFIG)
        and not k.endswith((".storage.topic", ".replication.factor", ".partitions"))
    } | {f"{t}.storage.replication.factor": factor for t in ("config", "offset", "status")}
    plugins = [
        _maven_plugin(
            "debezium-connector-postgres",
            "io.debezium",
            "debezium-connector-postgres",
            v["debezium"],
        )
    ]
    if watched.connector.encoding is Encoding.AVRO:
        plugins += [
            _maven_plugin(
                "apicurio-converter",
                "io.apicurio",
                "apicurio-registry-utils-converter",
                v["apicurio.converter"],
            ),
            _transforms_plugin(target),
        ]
    return {
        "apiVersion": STRIMZI_API,
        "kind": "KafkaConnect",
        "metadata": {
            "name": target.connect_cluster,
            # Connectors come from KafkaConnector resources, not the REST API.
            "annotations": {"strimzi.io/use-connector-resources": "true"},
        },
        "spec": {
            # One task runs the connector; a second worker takes it over on failure.
            "replicas": topology.connect_workers if topology else 2,
            "resources": {
                "requests": {"cpu": "250m", "memory": "1Gi"},
                "limits": {"memory": "2Gi"},
            },
            "bootstrapServers": target.kafka_bootstrap,
            "groupId": worker["group.id"],
            "configStorageTopic": worker["config.storage.topic"],
            "offsetStorageTopic": worker["offset.storage.topic"],
            "statusStorageTopic": worker["status.storage.topic"],
            "config": spec_config,
            "build": {
                "output": {"type": "docker", "image": target.connect_image},
                "plugins": plugins,
            },
            "template": {
                "connectContainer": {
                    "env": [
                        {
                            "name": "CDC_DEBEZIUM_PASSWORD",
                            "valueFrom": {
                                "secretKeyRef": {
                                    "name": DEBEZIUM_SECRET_NAME,
                                    "key": DEBEZIUM_PASSWORD_KEY,
                                }
                            },
                        }
                    ]
                }
            },
        },
    }


def _maven_plugin(name: str, group: str, artifact: str, version: str) -> dict[str, Any]:
    return {
        "name": name,
        "artifacts": [{"type": "maven", "group": group, "artifact": artifact, "version": version}],
    }


def _transforms_plugin(target: Target) -> dict[str, Any]:
    """Our transforms (the Avro connector keeps NULLs with them): a jar the user serves, as
    nothing publishes it. Without one, Connect would refuse the connector's config."""
    if not target.transforms_url:
        raise ConfigError(
            "cdc deploy kubernetes",
            [
                "the Avro encoding needs cdc's transforms in Kafka Connect, and they are not "
                "on Maven Central for Strimzi to fetch: serve cdc-transforms.jar (`cdc stack "
                "fetch` builds it into <JVM home>/plugins/cdc-transforms/, `mvn -f "
                "debezium/pom.xml -pl transforms package -Dcdc.jvm.home=DIR` into "
                "DIR/plugins/cdc-transforms/) where the cluster can download it, and pass its "
                "address as --transforms-url"
            ],
        )
    return {
        "name": "cdc-transforms",
        "artifacts": [{"type": "jar", "url": target.transforms_url}],
    }


def consumer_settings(settings: Settings, target: Target) -> dict[str, str]:
    """The consumer's non-secret settings (the settings ConfigMap)."""
    return {
        "CDC_WATCHED_TABLES": f"{CONFIG_DIR}/{settings.watched_tables.name}",
        "CDC_SECRETS_DIR": SECRETS_DIR,
        "CDC_HANDLERS": settings.handlers,
        "CDC_GROUP_ID": settings.group_id,
        "CDC_KAFKA_BOOTSTRAP": target.kafka_bootstrap,
        "CDC_KAFKA_SECURITY_PROTOCOL": settings.kafka_security_protocol,
        "CDC_PG_HOST": target.pg_host,
        "CDC_PG_PORT": str(settings.pg_port),
        "CDC_PG_DATABASE": settings.pg_database,
        "CDC_PG_USER": settings.pg_user,
        "CDC_DEBEZIUM_USER": settings.debezium_user,
        "CDC_REGISTRY_URL": target.registry_url,
        # Strimzi owns the connector: the consumer checks the database, not Connect.
        "CDC_CONNECT_URL": "",
        **consumer_env(settings),
    }


def consumer_manifests(
    watched_text: str,
    settings: Settings,
    target: Target,
    workloads: Mapping[str, WorkloadOptions] | None = None,
) -> list[dict[str, Any]]:
    """ConfigMaps (watched-tables file, settings), the Deployment (one a workload, when the
    file declares workloads: ``<name>`` runs `default`, ``<name>-<workload>`` each other
    with its ``replicas``), a metrics Service, a PodDisruptionBudget a Deployment, and for
    the Prometheus Operator the alerting rules and a ServiceMonitor. The Secret ``cdc`` is
    the operator's to create."""
    name = target.name
    part_of = {"app.kubernetes.io/part-of": name}
    labels = {"app.kubernetes.io/name": "cdc", "app.kubernetes.io/instance": name}
    port = served_port(settings)
    tables_map, settings_map = f"{name}-watched-tables", f"{name}-settings"
    env = consumer_settings(settings, target)
    digest = hashlib.sha256(watched_text.encode() + repr(sorted(env.items())).encode())

    def container(cname: str, args: list[str]) -> dict[str, Any]:
        return {
            "name": cname,
            "image": target.image,
            "args": args,
            "envFrom": [{"configMapRef": {"name": settings_map}}],
            "volumeMounts": [
                {"name": "watched-tables", "mountPath": CONFIG_DIR, "readOnly": True},
                {"name": "secrets", "mountPath": SECRETS_DIR, "readOnly": True},
                {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108 - a private emptyDir
            ],
            "securityContext": {
                "allowPrivilegeEscalation": False,
                "readOnlyRootFilesystem": True,
                "capabilities": {"drop": ["ALL"]},
            },
        }

    def probe(path: str, period: int, failures: int) -> dict[str, Any]:
        return {
            "httpGet": {"path": path, "port": "http"},
            "periodSeconds": period,
            "timeoutSeconds": 5,
            "failureThreshold": failures,
        }

    def consumer(args: list[str]) -> dict[str, Any]:
        return container("consumer", args) | {
            "ports": [{"name": "http", "containerPort": port}],
            # The start-up check and the first join can take a while.
            "startupProbe": probe("/healthz", 5, 24),
            "livenessProbe": probe("/healthz", 10, 3),
            "readinessProbe": probe("/readyz", 5, 3),
            "resources": {
                "requests": {"cpu": "250m", "memory": "256Mi"},
                "limits": {"memory": "512Mi"},
            },
        }

    # Tables, grants and publication before the consumer starts (idempotent, locked).
    prepare = container("prepare", ["db", "prepare"]) | {
        "resources": {
            "requests": {"cpu": "50m", "memory": "128Mi"},
            "limits": {"memory": "256Mi"},
        }
    }

    def deployment(
        dname: str, labels: dict[str, str], replicas: int, args: list[str]
    ) -> list[dict[str, Any]]:
        return [
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": _meta(dname, target, labels=labels | part_of),
                "spec": {
                    "replicas": replicas,
                    "selector": {"matchLabels": labels},
                    # One consumer at a time leaves the group: each leave is one rebalance.
                    "strategy": {
                        "type": "RollingUpdate",
                        "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1},
                    },
                    "template": {
                        "metadata": {
                            "labels": labels | part_of,
                            "annotations": {
                                "prometheus.io/scrape": "true",
                                "prometheus.io/port": str(port),
                                "prometheus.io/path": "/metrics",
                                # A changed watched-tables file or setting rolls the pods.
                                "cdc.dev/config-sha256": digest.hexdigest()[:16],
                            },
                        },
                        "spec": {
                            "automountServiceAccountToken": False,
                            # Past the shutdown deadline, so in-flight work ends before SIGKILL.
                            "terminationGracePeriodSeconds": grace_period_s(settings),
                            "securityContext": {
                                "runAsNonRoot": True,
                                "runAsUser": 10001,
                                "runAsGroup": 10001,
                                "seccompProfile": {"type": "RuntimeDefault"},
                            },
                            # Consumers on different nodes where the cluster allows it.
                            "topologySpreadConstraints": [
                                {
                                    "maxSkew": 1,
                                    "topologyKey": "kubernetes.io/hostname",
                                    "whenUnsatisfiable": "ScheduleAnyway",
                                    "labelSelector": {"matchLabels": labels},
                                }
                            ],
                            "initContainers": [prepare],
                            "containers": [consumer(args)],
                            "volumes": [
                                {"name": "watched-tables", "configMap": {"name": tables_map}},
                                {"name": "secrets", "secret": {"secretName": SECRET_NAME}},
                                {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
                            ],
                        },
                    },
                },
            },
            {
                "apiVersion": "policy/v1",
                "kind": "PodDisruptionBudget",
                "metadata": _meta(dname, target, labels=labels | part_of),
                "spec": {"maxUnavailable": 1, "selector": {"matchLabels": labels}},
            },
        ]

    deployments = deployment(name, labels, target.replicas, ["run"])
    if workloads:
        # `default` keeps the Deployment (and its selector) it had before workloads.
        deployments = deployment(name, labels, target.replicas, ["run", "--workload", "default"])
        for w, options in workloads.items():
            mine = labels | {"app.kubernetes.io/instance": f"{name}-{w}"}
            deployments += deployment(
                f"{name}-{w}", mine, options.replicas, ["run", "--workload", w]
            )
    return [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": _meta(tables_map, target, labels=labels),
            "data": {settings.watched_tables.name: watched_text},
        },
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": _meta(settings_map, target, labels=labels),
            "data": env,
        },
        *deployments,
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": _meta(f"{name}-metrics", target, labels=labels),
            "spec": {
                # Every workload's consumers: the series tell them apart by `workload`.
                "selector": {"app.kubernetes.io/name": "cdc"} | part_of,
                "ports": [{"name": "http", "port": port, "targetPort": "http"}],
            },
        },
        *monitoring_manifests(_meta(name, target, labels=labels), labels),
    ]


def render_kubernetes(
    watched_text: str, watched: WatchedTables, settings: Settings, target: Target
) -> str:
    """Everything for a namespace: the consumer, and Kafka Connect with the connector."""
    # As Strimzi's Connect pods reach PostgreSQL and the registry.
    connect = settings.model_copy(
        update={"connect_pg_host": target.pg_host, "connect_registry_url": target.registry_url}
    )
    connector = kafka_connector(watched, connect, target.connect_cluster, target.replicated)
    cluster = kafka_connect(watched, target)
    for doc in (connector, cluster):
        if target.namespace:
            doc["metadata"]["namespace"] = target.namespace
    consumers = consumer_manifests(watched_text, settings, target, watched.workloads)
    text = dump_all([*consumers, cluster, connector])
    return replicated_mode.assumptions(target.kafka_bootstrap) + text if target.replicated else text
