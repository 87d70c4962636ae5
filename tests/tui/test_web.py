"""The pure parts of `loopdeck serve`: the tokens file, loopback addresses, a dead dashboard's last words."""

from __future__ import annotations

import pytest

from tui.web.access import is_loopback
from tui.web.server import dashboard_argv, ended_message, last_line
from tui.web.tokens import Identity, Role, TokensError, parse_tokens

ALICE = "a" * 24
VICTOR = "v" * 24


def test_a_tokens_file_gives_each_token_its_name_and_role():
    tokens = parse_tokens(f"# comment\n\n{ALICE} alice operator\n  {VICTOR}   victor viewer  \n")
    assert tokens.find(ALICE) == Identity("alice", Role.OPERATOR)
    assert tokens.find(VICTOR) == Identity("victor", Role.VIEWER) and tokens.find(VICTOR).read_only
    assert tokens.find("a" * 23) is None and tokens.find("") is None and tokens.find(None) is None
    assert tokens.describe() == "1 operator, 1 viewer"


@pytest.mark.parametrize(
    ("text", "error"),
    [
        (f"{ALICE} alice", "tokens:1: expected `TOKEN NAME ROLE` (3 words), found 2"),
        ("short alice operator", "tokens:1: the token is shorter than 16 characters"),
        (f"{ALICE} al/ice operator", "tokens:1: name 'al/ice' must be one word"),
        (f"# x\n{ALICE} alice admin", "tokens:2: role 'admin' is not one of: operator, viewer"),
        (f"{ALICE} alice operator\n{ALICE} bob viewer", "tokens:2: this token is already"),
        ("# nobody\n", "tokens: has no tokens"),
    ],
)
def test_a_bad_tokens_file_names_the_line_and_never_the_token(text, error):
    with pytest.raises(TokensError) as caught:
        parse_tokens(text)
    assert str(caught.value).startswith(error)
    assert ALICE not in str(caught.value)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        *[("127.0.0.1", True), ("localhost", True), ("::1", True), ("[::1]", True), ("127.0.0.2", True)],
        *[("0.0.0.0", False), ("192.168.1.5", False), ("::", False), ("example.com", False)],
    ],
)
def test_only_loopback_addresses_are_served_without_tokens(host, loopback):
    assert is_loopback(host) is loopback


def test_a_viewer_gets_a_read_only_dashboard_of_its_own_name():
    argv = dashboard_argv(Identity("victor", Role.VIEWER), "20261130-000000-abcdef")
    assert argv[1:] == ["-m", "tui.cli", "--user", "victor", "attach", "20261130-000000-abcdef", "--read-only"]
    assert "--read-only" not in dashboard_argv(Identity("alice", Role.OPERATOR), None)


def test_a_dead_dashboards_last_words_are_plain_text():
    hostile = b"Traceback...\nloopdeck: no run \x1b]0;pwned\x07'\x1b[31mx\x1b[0m'\x9b\n\n"
    line = last_line(hostile)
    assert line.startswith("loopdeck: no run ") and line.endswith("'x'\ufffd")  # the text, none of the codes
    assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in line)
    message = ended_message(-9, last_line(hostile))
    assert b"(signal 9)" in message and b"\x1b]" not in message and message.count(b"\x1b") == 1  # only our reset
