"""The outbound destination policy: which addresses webhooks may reach."""

from __future__ import annotations

import pytest

from gateway.destinations import DestinationPolicy, DestinationRefused, parse_networks


@pytest.mark.parametrize("address", ["127.0.0.1", "127.8.9.10", "::1", "169.254.169.254", "10.1.2.3", "172.31.0.1",
                                     "192.168.0.1", "100.64.1.1", "0.0.0.0", "::", "fe80::1%eth0", "fc00::1",
                                     "::ffff:127.0.0.1", "::ffff:10.0.0.1", "2002:7f00:1::", "224.0.0.1", "ff02::1",
                                     "240.0.0.1", "255.255.255.255", "not-an-ip"])
def test_internal_addresses_refused(address):
    assert not DestinationPolicy().address_allowed(address)


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700::1111", "::ffff:93.184.216.34"])
def test_public_addresses_allowed(address):
    assert DestinationPolicy().address_allowed(address)


def test_allow_list_names_internal_networks():
    policy = DestinationPolicy(parse_networks(["10.0.5.0/24", "::1/128"]))
    assert policy.address_allowed("10.0.5.9") and policy.address_allowed("::1")
    assert not policy.address_allowed("10.0.6.1") and not policy.address_allowed("127.0.0.1")


async def test_check_url_resolves_every_spelling():
    policy = DestinationPolicy()
    for url in ["http://2130706433/", "http://localhost/", "http://[::1]/", "http://0x7f.1/"]:
        with pytest.raises(DestinationRefused) as info:
            await policy.check_url(url)
        assert info.value.code == "destination_not_allowed" and info.value.status == 422
    with pytest.raises(DestinationRefused) as info:
        await policy.check_url("gopher://example.com/")
    assert info.value.code == "invalid_url"
    await DestinationPolicy(parse_networks(["127.0.0.0/8"])).check_url("http://2130706433:9/")
