"""Ephemeral TURN credentials (gateway/turn.py): the TURN REST API scheme as coturn checks it (the end-to-end proof
against a real coturn is tests/integration/test_turn.py), URL checks, and what the welcome carries."""

from __future__ import annotations

import base64
import subprocess

import pytest

from gateway.config import IceServer, Settings
from gateway.turn import check_turn_url, ice_servers_for, mint_turn_server, turn_password


def test_the_password_is_base64_hmac_sha1_of_the_username_as_openssl_computes_it():
    secret, username = "a-shared-secret-for-turn", "1796000000:0a1b2c3d4e5f6071"
    digest = subprocess.run(["openssl", "dgst", "-sha1", "-hmac", secret, "-binary"], input=username.encode(),
                            capture_output=True, check=True).stdout
    assert turn_password(secret, username) == base64.b64encode(digest).decode()


def test_a_minted_server_names_its_expiry_and_session():
    server = mint_turn_server("a-shared-secret-for-turn", ["turn:t.example.com:3478?transport=udp"], "sess1", 600,
                              1_796_000_000.4)
    assert server.username == "1796000600:sess1"
    assert server.credential == turn_password("a-shared-secret-for-turn", "1796000600:sess1")
    assert server.urls == ["turn:t.example.com:3478?transport=udp"]


@pytest.mark.parametrize("url", ["turn:t.example.com", "turn:t.example.com:3478?transport=udp",
                                 "turn:10.0.0.1:3478?transport=tcp", "turns:t.example.com:443?transport=tcp",
                                 "turns:t.example.com:5349", "turn:[2001:db8::1]:3478"])
def test_turn_urls_clients_can_use(url):
    assert check_turn_url(url) == url


@pytest.mark.parametrize("url, why", [("stun:t.example.com", "not a TURN URL"), ("turn:", "not a TURN URL"),
                                      ("turn:t.example.com:99999", "out of range"),
                                      ("turns:t.example.com:443?transport=udp", "over TCP"),
                                      ("turn:t.example.com?transport=sctp", "not a TURN URL"),
                                      ("turn:t example.com", "not a TURN URL")])
def test_bad_turn_urls_are_refused_with_a_reason(url, why):
    with pytest.raises(ValueError, match=why):
        check_turn_url(url)


def test_settings_refuse_turn_urls_without_a_secret_and_a_short_secret():
    with pytest.raises(ValueError, match="turn_secret"):
        Settings(turn_urls=["turn:t.example.com:3478"])
    with pytest.raises(ValueError, match="at least 16"):
        Settings(turn_urls=["turn:t.example.com:3478"], turn_secret="short")


def test_the_welcome_list_is_the_static_servers_then_the_minted_turn():
    static = IceServer(urls=["stun:stun.example.com:3478"])
    settings = Settings(ice_servers=[static], turn_urls=["turn:t.example.com:3478?transport=udp"],
                        turn_secret="a-shared-secret-for-turn", turn_credential_ttl_s=120)
    servers = ice_servers_for(settings, "sess9", 1_000_000.0)
    assert servers[0] == static and servers[1].username == "1000120:sess9"
    assert ice_servers_for(Settings(ice_servers=[static]), "sess9", 0) == [static]  # no secret: nothing minted
