"""Proves secrets and personal data are replaced by their placeholders and counted, and that
the listed look-alikes (versions, private IPs, example addresses, hashes, placeholders) are
left alone; run: pytest tests/data/test_pii.py -q"""

from __future__ import annotations

import pickle

import pytest
from datatrove.data import Document

from geex.data.pii import KINDS, RedactSecrets, find_secrets, redact

# Made-up credentials in the real formats (random characters, no live account behind them).
AWS_KEY = "AKIAZ3MSJV4WWBFNHX2Q"
GITHUB_TOKEN = "ghp_" + "R8x2Kq9ZmT4vLw7NbC3pYh6Jd1Fs5Ga0Ue8i"
GITLAB_TOKEN = "glpat-" + "x7Kp2Qm9Zr4Tv8Wn3Bc6"
SLACK_TOKEN = "xoxb-" + "2048193745-7719304829-Qm9Zr4Tv8Wn3Bc6Hj1Fs5Ga0"
JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."
    "eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkdlZXgiLCJpYXQiOjE1MTYyMzkwMjJ9."
    "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)
RANDOM_40 = "Tq9vL2mZ8xR4kP7wN3bC6hJ1fD5gS0aE2yU8iO4e"


def redacted(text: str) -> str:
    return redact(text)[0]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # e-mail addresses
        ("Contact: jane.doe@gmail.com", "Contact: <EMAIL>"),
        ("# Author: Guido <guido@python.org>", "# Author: Guido <<EMAIL>>"),
        ("mail alice+lists@corp.co.uk.", "mail <EMAIL>."),
        # IP addresses
        ('HOST = "93.184.216.34"', 'HOST = "<IP_ADDRESS>"'),
        ("ssh deploy@52.14.0.7 -p 22", "ssh deploy@<IP_ADDRESS> -p 22"),
        ("server 8.8.4.5 answers", "server <IP_ADDRESS> answers"),
        ("peer = '2606:2800:220:1:248:1893:25c8:1946'", "peer = '<IP_ADDRESS>'"),
        ("http://[2a03:2880:f12f:83:face:b00c:0:25de]:80/", "http://[<IP_ADDRESS>]:80/"),
        # keys and tokens in well-known formats
        (f"aws_access_key_id = {AWS_KEY}", "aws_access_key_id = <KEY>"),
        ("maps.init('AIzaSyD8x2Kq9ZmT4vLw7NbC3pYh6Jd1Fs5Ga0U')", "maps.init('<KEY>')"),
        ("stripe.api = 'sk_live_51Hx9Qm2Zr4Tv8Wn3Bc6Jd1Fs5'", "stripe.api = '<KEY>'"),
        (f'TOKEN = "{GITHUB_TOKEN}"', 'TOKEN = "<TOKEN>"'),
        (
            f"git clone https://{GITLAB_TOKEN}@gitlab.com/x/y",
            "git clone https://<TOKEN>@gitlab.com/x/y",
        ),
        (f"slack({SLACK_TOKEN!r})", "slack('<TOKEN>')"),
        (f"Authorization: Bearer {JWT}", "Authorization: Bearer <TOKEN>"),
        # secrets given to secret-like names, quoted or ending a line
        ('api_key = "a8f5f167f44f4964e6c998dee827110c"', 'api_key = "<KEY>"'),
        ('config = {"password": "hunter2!X9"}', 'config = {"password": "<KEY>"}'),
        ("const clientSecret = 'p4ss-W0rd-2024';", "const clientSecret = '<KEY>';"),
        (f"AWS_SECRET_ACCESS_KEY={RANDOM_40}\n", "AWS_SECRET_ACCESS_KEY=<KEY>\n"),
        (f"    api_key: str = {RANDOM_40!r}", "    api_key: str = '<KEY>'"),
        ('SECRET_KEY = "django-insecure-8f$2x!k7@q"', 'SECRET_KEY = "<KEY>"'),
        # a quoted random string, whatever its name
        ('client = Client("Xk9mP2vQ7rT4wZ8nB5cF1hJ6")', 'client = Client("<KEY>")'),
    ],
)
def test_redacts(text, expected):
    assert redacted(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        # e-mail look-alikes: reserved or dotless domains, git remotes, images, decorators
        "user@localhost",
        "admin@example.com and bob@mail.example.org",
        "ci@runner.test, nobody@host.invalid",
        "git@github.com:geex/geex.git",
        "background: url(icon@2x.png)",
        "y = x@self.weight + b",
        "@property\ndef name(self): ...",
        "pip install geex@1.0.2",
        # IP look-alikes: versions, private and special ranges, resolvers, OIDs, sections
        '__version__ = "1.2.3.4"',
        "release 2.6.16.60 of linux-2.6.16.60",
        "bump to v10.20.30.40",
        "hosts: 10.0.0.1, 192.168.1.20, 172.16.5.4, 127.0.0.1, 0.0.0.0, 255.255.255.255",
        "dns = ['8.8.8.8', '1.1.1.1']",
        "docs use 203.0.113.5 and 198.51.100.7 and 192.0.2.1",
        "multicast 224.0.0.251",
        'OID_POSTAL_CODE = "2.5.4.17"  # X.500 oid',
        "enterprise 1.3.6.1.4.1.311 arc",
        "// [23.2.4.3] modifiers",
        "// 20.11.5.1 construction / copy / destroy",
        "ISO 9.4.2.251 element",
        "01.02.03.04 is not an address",
        "std::vector<int>::iterator it; a::b::c(); 12:30:45",
        "fe80::1ff:fe23:4567:890a and ::1 and fd00:1:2:3::4",
        "mac 00:1a:2b:3c:4d:5e:6f:70",
        # key look-alikes: documented examples, placeholders, templates, names, hashes
        "AKIAIOSFODNN7EXAMPLE",
        "mask_live_51Hx9Qm2Zr4Tv8Wn3Bc6Jd1Fs5 is not a Stripe key",
        'password = "changeme"',
        'token = "${GITHUB_TOKEN}"',
        'api_key = "<your-api-key>"',
        "secret = '{{ vault_secret }}'",
        'password = "%(password)s"',
        'api_key = os.environ["API_KEY"]',
        "token_type = 'bearer_v2'",
        "self.token = token",
        'PRIVATE_KEY_TYPE = "ed25519.PrivateKey"',
        'id = "123e4567-e89b-12d3-a456-426614174000"',
        'sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"',
        'rev = "3a1b2c3d4e5f60718293a4b5c6d7e8f901234567"',
        'ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"',
        'data = "VHdhcyBicmlsbGlnLCBhbmQgdGhlIHNsaXRoeSB0b3Zlcw=="',  # base64 of a poem
        'name = "getElementsByTagNameNS"',
        "The token: is the next lexeme of the input stream",
    ],
)
def test_keeps(text):
    assert find_secrets(text) == [], redacted(text)


def test_private_key_body_is_replaced_and_its_frame_kept():
    body = "MIIEpAIBAAKCAQEA3Tz2mr7SZiAMfQyuvBjM2\nq8fGh5kLp0ZxW2yT7uV9rN4cE1dS6aJ3oF8\n"
    pem = f"-----BEGIN RSA PRIVATE KEY-----\n{body}-----END RSA PRIVATE KEY-----\n"
    assert redacted(f'KEY = """{pem}"""') == (
        'KEY = """-----BEGIN RSA PRIVATE KEY-----\n<KEY>\n-----END RSA PRIVATE KEY-----\n"""'
    )
    public = (
        "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcD\n-----END PUBLIC KEY-----"
    )
    assert redacted(public) == public


def test_counts_each_kind_and_nests_nothing():
    text = (
        f"# maintainer: ops@geex.dev, backup at 93.184.216.34\n"
        f'GITHUB_TOKEN = "{GITHUB_TOKEN}"\n'
        f'db_password = "s3cR3t-Hx9!vQ"\n'
        f"# a token inside a URL is one token, not also an address:\n"
        f"https://{GITHUB_TOKEN}@github.com/org/repo\n"
    )
    out, counts = redact(text)
    assert counts == {"email": 1, "ip_address": 1, "key": 1, "token": 2}
    assert GITHUB_TOKEN not in out and "93.184" not in out and "ops@" not in out


def test_redaction_is_idempotent():
    text = f'x = "{RANDOM_40}"\nemail = "jane@gmail.com"\n{JWT}\n10.0.0.1 93.184.216.34\n'
    once = redacted(text)
    assert once != text
    assert redacted(once) == once


def test_block_rewrites_text_marks_metadata_and_counts():
    docs = [
        Document(f"api_key = '{RANDOM_40}'  # jane@gmail.com", "a", metadata={}),
        Document("print('hello')\n", "b", metadata={}),
    ]
    block = RedactSecrets()
    out = list(block.run(iter(docs)))
    assert out[0].text == "api_key = '<KEY>'  # <EMAIL>"
    assert out[0].metadata["redactions"] == {"email": 1, "ip_address": 0, "key": 1, "token": 0}
    assert out[1].metadata["redactions"] == dict.fromkeys(KINDS, 0)
    assert block.stats["redacted_key"].total == 1
    assert block.stats["redacted_email"].total == 1
    assert block.stats["documents_redacted"].total == 1
    assert block.stats["documents"].total == 2


def test_block_pickles_for_worker_processes():
    block = pickle.loads(pickle.dumps(RedactSecrets()))
    doc = Document("root@93.184.216.34", "a", metadata={})
    assert next(block.run(iter([doc]))).text == "root@<IP_ADDRESS>"
