"""Secured Kafka for real: TLS through a TLS-terminating proxy in front of the embedded
broker (socat, with certificates from trustme), mutual TLS, and SASL against the broker's
own ``--authentication``.

The broker advertises the proxy's address, so every connection librdkafka makes goes
through TLS. tansu 0.6 cannot complete a SASL/SCRAM login on its memory or S3 storage: its
credential store there is a no-op (tansu-storage/src/dynostore.rs, v0.6.0:
``upsert_user_scram_credential`` returns Ok without storing, ``user_scram_credential``
always None), so every SCRAM login ends "unknown-user". What can be shown for real is that
darkroom's SASL settings reach the broker's SASL exchange (mechanism and username as
configured) and that the refusal is one line naming it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

from streams.client import Client
from streams.config import Settings
from streams.dev.samples import photo_jpeg
from streams.dev.stack import broker_command, free_port_block
from streams.handlers.steps import worker_specs
from streams.runtime.supervisor import Supervisor
from streams.runtime.topics import ensure_topics

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Pki:
    ca: Path
    wrong_ca: Path
    client_cert: Path
    client_key: Path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pki]:
    root = tmp_path_factory.mktemp("pki")
    ca, wrong, clients = trustme.CA(), trustme.CA(), trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    server.private_key_and_cert_chain_pem.write_to_path(str(root / "server.pem"))
    ca.cert_pem.write_to_path(str(root / "ca.pem"))
    wrong.cert_pem.write_to_path(str(root / "wrong-ca.pem"))
    clients.cert_pem.write_to_path(str(root / "clients-ca.pem"))
    client = clients.issue_cert("darkroom-worker")
    client.cert_chain_pems[0].write_to_path(str(root / "client.pem"))
    client.private_key_pem.write_to_path(str(root / "client.key"))
    yield Pki(root / "ca.pem", root / "wrong-ca.pem", root / "client.pem", root / "client.key")


def _wait_for(port: int, proc: subprocess.Popen[bytes]) -> None:
    import socket

    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        assert proc.poll() is None, "a server exited at start"
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError(f"port {port} did not open")


@dataclass(frozen=True)
class TlsBroker:
    port: int
    """The proxy's TLS port (what the broker advertises)."""
    mtls_port: int
    """A second proxy that requires a client certificate from the clients' CA."""


@pytest.fixture(scope="module")
def tls_broker(pki: Pki) -> Iterator[TlsBroker]:
    """tansu (memory storage) behind two socat TLS proxies; it advertises the first one's port."""
    broker, proxy, mtls = free_port_block(3)
    procs = [
        subprocess.Popen(
            broker_command(f"tcp://127.0.0.1:{broker}", "memory://tansu/", advertised=f"tcp://127.0.0.1:{proxy}"),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    ]
    _wait_for(broker, procs[0])
    cert = pki.ca.parent / "server.pem"
    for port, verify in ((proxy, "verify=0"), (mtls, f"verify=1,cafile={pki.ca.parent / 'clients-ca.pem'}")):
        procs.append(
            subprocess.Popen(
                [
                    "socat",
                    f"OPENSSL-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork,cert={cert},{verify}",
                    f"TCP:127.0.0.1:{broker}",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        _wait_for(port, procs[-1])
    try:
        yield TlsBroker(proxy, mtls)
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(10)


def _darkroom(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("DARKROOM_")}, **settings.to_env()}
    return subprocess.run(
        [sys.executable, "-m", "streams.cli", *args], capture_output=True, text=True, timeout=120, env=env
    )


def _one_line(result: subprocess.CompletedProcess[str], says: str) -> str:
    assert result.returncode != 0, result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert re.search(says, lines[0], re.IGNORECASE), lines[0]
    return lines[0]


def test_a_pipeline_runs_over_tls_and_a_wrong_ca_or_plaintext_costs_one_line(
    settings: Settings, pki: Pki, tls_broker: TlsBroker
) -> None:
    tls = settings.replace(
        kafka_bootstrap=f"127.0.0.1:{tls_broker.port}", kafka_security_protocol="SSL", kafka_ssl_ca=pki.ca
    )
    ensure_topics(tls)
    supervisor = Supervisor(tls, worker_specs(tls, ["ingest", "thumbnail"]))
    supervisor.start()
    try:
        client = Client(tls)
        subs = [client.submit(photo_jpeg(320, 240, seed=i), f"t{i}.jpg", "thumbnail:sizes=48") for i in range(2)]
        finals = client.wait(subs, timeout_s=90)
    finally:
        supervisor.stop.set()
        supervisor.join(30)
    assert {s.image_id: finals[s.image_id].status for s in subs if s.image_id in finals} == {
        s.image_id: "completed" for s in subs
    }
    started = time.monotonic()
    wrong = _darkroom(tls.replace(kafka_ssl_ca=pki.wrong_ca), "worker", "ingest")
    _one_line(wrong, r"configuration_error: cannot connect to Kafka securely: .*certificate verify failed")
    plain = _darkroom(tls.replace(kafka_security_protocol="PLAINTEXT"), "groups", "list")
    _one_line(plain, r"kafka|broker")
    assert time.monotonic() - started < 60  # neither waited out a long timeout


def test_mutual_tls_admits_the_clients_certificate_and_refuses_a_client_without_one(
    settings: Settings, pki: Pki, tls_broker: TlsBroker
) -> None:
    mtls = settings.replace(
        kafka_bootstrap=f"127.0.0.1:{tls_broker.mtls_port}",
        kafka_security_protocol="SSL",
        kafka_ssl_ca=pki.ca,
        kafka_ssl_certificate=pki.client_cert,
        kafka_ssl_key=pki.client_key,
    )
    result = _darkroom(mtls, "groups", "list", "--json")  # the bootstrap goes through the mTLS proxy
    assert result.returncode == 0, result.stderr
    anonymous = mtls.replace(kafka_ssl_certificate=None, kafka_ssl_key=None)
    _one_line(_darkroom(anonymous, "groups", "list"), r"kafka")


@pytest.fixture(scope="module")
def sasl_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    """tansu with ``--authentication`` (memory storage), logging at debug to a file."""
    (port,) = free_port_block(1)
    log = tmp_path_factory.mktemp("sasl") / "tansu.log"
    url = f"tcp://127.0.0.1:{port}"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            broker_command(url, "memory://tansu/", "--authentication"),
            stdout=out,
            stderr=subprocess.STDOUT,
            env={"PATH": os.environ["PATH"], "RUST_LOG": "tansu_auth=debug"},
        )
    _wait_for(port, proc)
    try:
        yield port, log
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_sasl_reaches_the_brokers_login_and_a_refusal_is_one_line_naming_it(
    settings: Settings, sasl_broker: tuple[int, Path], mechanism: str
) -> None:
    port, log = sasl_broker
    sasl = settings.replace(
        kafka_bootstrap=f"127.0.0.1:{port}",
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_mechanism=mechanism,
        kafka_sasl_username="darkroom-ingest",
        kafka_sasl_password="correct horse battery staple",
    )
    started = time.monotonic()
    line = _one_line(_darkroom(sasl, "worker", "ingest"), r"configuration_error: Kafka refused darkroom's credentials")
    assert "SASL" in line and "battery" not in line
    assert time.monotonic() - started < 30
    said = log.read_text(errors="replace")
    scram = mechanism.replace("SCRAM-SHA-", "Scram")
    assert f'auth_id="darkroom-ingest" mechanism={scram}' in re.sub(r"\x1b\[[0-9;]*m", "", said)
