"""The webhook egress policy: every blocked range, embedded IPv4, resolved names, allow-lists."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence

import pytest

from streams.config import parse_networks
from streams.errors import InvalidWebhookUrl, WebhookTargetBlocked, WebhookTargetUnresolvable
from streams.runtime.egress import EgressGuard, blocked_reason, system_resolver

BLOCKED = [
    # IPv4
    ("0.0.0.0", "unspecified"),
    ("0.1.2.3", "unspecified"),
    ("10.0.0.1", "private"),
    ("10.255.255.255", "private"),
    ("172.16.0.1", "private"),
    ("172.31.255.254", "private"),
    ("192.168.1.1", "private"),
    ("100.64.0.1", "shared address space (CGNAT)"),
    ("100.127.255.254", "shared address space (CGNAT)"),
    ("127.0.0.1", "loopback"),
    ("127.1.2.3", "loopback"),
    ("169.254.1.1", "link-local"),
    ("169.254.169.254", "cloud metadata"),
    ("169.254.170.2", "cloud metadata"),
    ("100.100.100.200", "cloud metadata"),
    ("168.63.129.16", "cloud metadata"),
    ("192.0.0.8", "reserved"),
    ("192.0.2.1", "documentation"),
    ("198.51.100.7", "documentation"),
    ("203.0.113.9", "documentation"),
    ("192.88.99.1", "reserved"),
    ("198.18.0.1", "benchmarking"),
    ("198.19.255.254", "benchmarking"),
    ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast"),
    ("240.0.0.1", "reserved"),
    ("255.255.255.255", "reserved"),
    # IPv6
    ("::", "unspecified"),
    ("::1", "loopback"),
    ("::7f00:1", "reserved"),  # IPv4-compatible, deprecated
    ("100::1", "reserved"),
    ("fc00::1", "private"),
    ("fd12:3456:789a::1", "private"),
    ("fd00:ec2::254", "cloud metadata"),
    ("fe80::1", "link-local"),
    ("febf:ffff::1", "link-local"),
    ("fec0::1", "site-local"),
    ("ff02::1", "multicast"),
    ("ff05::fb", "multicast"),
    ("2001:db8::1", "documentation"),
    ("3fff::1", "documentation"),
    ("2001::1", "reserved"),  # Teredo
    ("2001:2::1", "reserved"),  # benchmarking
    ("64:ff9b:1::1", "reserved"),  # local-use NAT64
    ("4000::1", "reserved"),  # outside 2000::/3
    ("5f00::1", "reserved"),
    # IPv6 embedding a blocked IPv4 address: judged by the IPv4 address
    ("::ffff:10.0.0.1", "private"),
    ("::ffff:127.0.0.1", "loopback"),
    ("::ffff:169.254.169.254", "cloud metadata"),
    ("::ffff:100.64.0.1", "shared address space (CGNAT)"),
    ("64:ff9b::10.0.0.1", "private"),
    ("64:ff9b::127.0.0.1", "loopback"),
    ("2002:a00:1::1", "private"),  # 6to4 of 10.0.0.1
    ("2002:7f00:1::1", "loopback"),  # 6to4 of 127.0.0.1
    ("2002:a9fe:a9fe::1", "cloud metadata"),  # 6to4 of 169.254.169.254
]

PUBLIC = [
    "8.8.8.8",
    "1.1.1.1",
    "93.184.216.34",
    "100.63.255.255",  # just below CGNAT
    "100.128.0.0",  # just above CGNAT
    "172.15.255.255",
    "172.32.0.0",
    "2606:4700:4700::1111",
    "2001:4860:4860::8888",
    "::ffff:8.8.8.8",
    "64:ff9b::8.8.8.8",
    "2002:808:808::1",  # 6to4 of 8.8.8.8
]


@pytest.mark.parametrize(("address", "reason"), BLOCKED)
def test_every_blocked_range_is_refused_with_its_reason(address: str, reason: str) -> None:
    assert blocked_reason(ipaddress.ip_address(address)) == reason
    with pytest.raises(WebhookTargetBlocked, match=re.escape(f"is {reason}")):
        EgressGuard().check(address)


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_pass(address: str) -> None:
    assert blocked_reason(ipaddress.ip_address(address)) is None
    EgressGuard().check(address)


def test_the_message_names_the_address_and_why() -> None:
    with pytest.raises(WebhookTargetBlocked) as info:
        EgressGuard().check("10.0.0.1")
    assert str(info.value) == "blocked: 10.0.0.1 is private"
    assert info.value.code == "webhook_target_blocked" and not info.value.retryable


def test_ipv4_mapped_ipv6_is_dialled_as_the_checked_ipv4_address() -> None:
    guard = EgressGuard(allow_networks=parse_networks("127.0.0.1/32"))
    target = guard.pin("http://[::ffff:127.0.0.1]:8080/hook")
    assert target.addresses == (ipaddress.ip_address("127.0.0.1"),)
    with pytest.raises(WebhookTargetBlocked, match=r"10\.0\.0\.1 is private"):
        EgressGuard().pin("http://[::ffff:10.0.0.1]/hook")


def test_a_hostname_resolving_to_loopback_is_blocked_through_the_real_resolver() -> None:
    with pytest.raises(WebhookTargetBlocked, match=r"is loopback \(from localhost\)"):
        EgressGuard().pin("http://localhost:9/hook")


def test_numeric_host_spellings_are_resolved_then_checked() -> None:
    # inet_aton accepts these: a URL check on the string alone would miss them.
    for url in ("http://2130706433/", "http://0x7f.1/", "http://017700000001/", "http://127.1/"):
        with pytest.raises(WebhookTargetBlocked, match="is loopback"):
            EgressGuard().pin(url)


def _resolver(answers: Sequence[str]) -> tuple[list[str], EgressGuard]:
    calls: list[str] = []

    def resolve(host: str, port: int) -> Sequence[str]:
        calls.append(f"{host}:{port}")
        return answers

    return calls, EgressGuard(resolver=resolve)


def test_one_blocked_answer_blocks_the_whole_name() -> None:
    calls, guard = _resolver(["93.184.216.34", "10.1.2.3"])
    with pytest.raises(WebhookTargetBlocked, match=r"10\.1\.2\.3 is private \(from mixed\.example\)"):
        guard.pin("https://mixed.example/hook")
    assert calls == ["mixed.example:443"]


def test_pinning_keeps_the_name_for_host_header_and_sni() -> None:
    calls, guard = _resolver(["93.184.216.34", "2606:2800:220:1::1"])
    target = guard.pin("https://Hooks.Example.com:8443/in?x=1")
    assert calls == ["hooks.example.com:8443"]
    assert [str(a) for a in target.addresses] == ["93.184.216.34", "2606:2800:220:1::1"]
    assert str(target.url_for(target.addresses[0])) == "https://93.184.216.34:8443/in?x=1"
    assert str(target.url_for(target.addresses[1])) == "https://[2606:2800:220:1::1]:8443/in?x=1"
    assert target.headers() == {"host": "hooks.example.com:8443"}
    assert target.extensions() == {"sni_hostname": "hooks.example.com"}
    plain = _resolver(["93.184.216.34"])[1].pin("http://hooks.example.com/in")
    assert plain.headers() == {"host": "hooks.example.com"} and plain.extensions() == {}


def test_ip_literal_targets_skip_dns_and_keep_their_url() -> None:
    calls, guard = _resolver([])
    target = guard.pin("https://93.184.216.34/hook")
    assert calls == [] and target.headers() == {} and target.extensions() == {}


def test_allow_networks_admit_exactly_those_networks() -> None:
    guard = EgressGuard(allow_networks=parse_networks("127.0.0.1/32, ::1/128,10.8.0.0/16"))
    for allowed in ("127.0.0.1", "::1", "10.8.3.4", "::ffff:127.0.0.1", "64:ff9b::10.8.0.1"):
        guard.check(allowed)
    for blocked in ("127.0.0.2", "10.9.0.1", "192.168.0.1", "fe80::1"):
        with pytest.raises(WebhookTargetBlocked):
            guard.check(blocked)


def test_allow_networks_never_admit_cloud_metadata() -> None:
    guard = EgressGuard(allow_networks=parse_networks("169.254.0.0/16,fd00::/8"))
    guard.check("169.254.1.1")
    for metadata in ("169.254.169.254", "fd00:ec2::254", "::ffff:169.254.169.254"):
        with pytest.raises(WebhookTargetBlocked, match="cloud metadata"):
            guard.check(metadata)


def test_parse_networks_rejects_what_is_not_a_network() -> None:
    assert parse_networks("") == ()
    assert parse_networks("127.0.0.1") == (ipaddress.ip_network("127.0.0.1/32"),)
    with pytest.raises(ValueError, match=r"localhost, 10\.0\.0\.1/8"):
        parse_networks("localhost,10.0.0.1/8")


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("ftp://example.com/x", "scheme"),
        ("file:///etc/passwd", "scheme"),
        ("gopher://example.com:70/_x", "scheme"),
        ("javascript:alert(1)", "scheme"),
        ("example.com/hook", "scheme"),
        ("http:///hook", "no host"),
        ("http://user:pass@example.com/hook", "credentials"),
        ("https://token@example.com/hook", "credentials"),
        ("http://exa mple.com/", "not a DNS name"),
        ("http://exa%2fmple.com/", "not a DNS name"),
    ],
)
def test_only_plain_http_and_https_urls_are_targets(url: str, why: str) -> None:
    with pytest.raises(InvalidWebhookUrl, match=why) as info:
        EgressGuard().pin(url)
    assert not info.value.retryable


def test_a_name_that_does_not_resolve_is_retryable() -> None:
    def fail(host: str, port: int) -> Sequence[str]:
        raise OSError("Name or service not known")

    with pytest.raises(WebhookTargetUnresolvable, match=r"dns: cannot resolve nowhere\.invalid") as info:
        EgressGuard(resolver=fail).pin("http://nowhere.invalid/")
    assert info.value.retryable
    with pytest.raises(WebhookTargetUnresolvable, match="no address"):
        _resolver([])[1].pin("http://empty.example/")


def test_the_system_resolver_answers_addresses() -> None:
    assert "127.0.0.1" in system_resolver("localhost", 80)
    assert system_resolver("127.0.0.1", 80) == ["127.0.0.1"]
