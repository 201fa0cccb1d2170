"""Settings: Kafka security reaches librdkafka; secrets never show when settings are shown."""

from pathlib import Path

import pytest

from cdc.logs import KAFKA_LOGGER
from cdc.settings import MASK, Settings, load_settings


def test_security_settings_become_librdkafka_properties() -> None:
    s = Settings(
        kafka_bootstrap="broker:9093",
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="svc",
        kafka_sasl_password="hunter2",  # type: ignore[arg-type]
        kafka_ssl_ca_location=Path("/etc/ca.pem"),
        kafka_extra={"client.rack": "eu-1a"},
    )
    assert s.kafka_config(**{"group.id": "g"}) == {
        "logger": KAFKA_LOGGER,  # librdkafka's lines through our logs
        "bootstrap.servers": "broker:9093",
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "svc",
        "sasl.password": "hunter2",
        "ssl.ca.location": "/etc/ca.pem",
        "ssl.endpoint.identification.algorithm": "https",
        "client.rack": "eu-1a",
        "group.id": "g",
    }


def test_plaintext_sets_no_tls_or_sasl_keys() -> None:
    assert Settings(kafka_bootstrap="b:1").kafka_config() == {
        "logger": KAFKA_LOGGER,
        "bootstrap.servers": "b:1",
        "security.protocol": "PLAINTEXT",
    }


def test_masked_hides_every_secret() -> None:
    s = Settings(
        pg_password="pg-secret",  # type: ignore[arg-type]
        kafka_sasl_password="kafka-secret",  # type: ignore[arg-type]
        kafka_extra={"sasl.oauthbearer.client.secret": "oauth-secret", "client.rack": "r"},
    )
    shown = s.masked()
    text = repr(shown) + repr(s)
    for secret in ("pg-secret", "kafka-secret", "oauth-secret"):
        assert secret not in text
    assert shown["pg_password"] == MASK
    assert shown["kafka_sasl_password"] == MASK
    assert shown["kafka_extra"] == {"sasl.oauthbearer.client.secret": MASK, "client.rack": "r"}


def test_load_settings_reads_env_file_and_secrets_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = tmp_path / "cdc.env"
    env.write_text("CDC_GROUP_ID=from-file\nCDC_PG_USER=file-user\n")
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "cdc_pg_password").write_text("mounted")
    monkeypatch.setenv("CDC_ENV_FILE", str(env))
    monkeypatch.setenv("CDC_SECRETS_DIR", str(secrets))
    monkeypatch.setenv("CDC_STACK_DIR", str(tmp_path / "no-stack"))
    monkeypatch.setenv("CDC_PG_USER", "env-user")
    s = load_settings()
    assert s.group_id == "from-file"
    assert s.pg_user == "env-user"  # the environment wins over the file
    assert s.pg_password.get_secret_value() == "mounted"


def test_stack_endpoints_keep_their_secrets_out_of_repr() -> None:
    from cdc.stack.endpoints import StackEndpoints

    secrets = {f"s3cret-{n}" for n in range(4)}
    su, app, dbz, scram = sorted(secrets)
    endpoints = StackEndpoints(
        kafka_bootstrap="127.0.0.1:1",
        connect_url="http://127.0.0.1:2",
        registry_url="http://127.0.0.1:3",
        pg_host="127.0.0.1",
        pg_port=4,
        pg_superuser_password=su,
        app_database="app",
        app_user="app",
        app_password=app,
        debezium_user="cdc_debezium",
        debezium_password=dbz,
        kafka_tls_bootstrap="127.0.0.1:5",
        kafka_sasl_bootstrap="127.0.0.1:6",
        kafka_ca_location="/ca.pem",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="cdc",
        kafka_sasl_password=scram,
    )
    settings = endpoints.settings(**endpoints.kafka_security("SASL_SSL"))
    for shown in (repr(endpoints), repr(settings), str(settings.masked())):
        assert not any(s in shown for s in secrets), shown
    config = settings.kafka_config()
    assert config["bootstrap.servers"] == "127.0.0.1:6"
    assert config["sasl.password"] == scram
    assert config["ssl.endpoint.identification.algorithm"] == "https"
    assert endpoints.env("SSL")["CDC_KAFKA_SECURITY_PROTOCOL"] == "SSL"
    assert "CDC_KAFKA_SASL_PASSWORD" not in endpoints.env("SSL")
