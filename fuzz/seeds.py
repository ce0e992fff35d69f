"""Writes the committed seed corpus of the fuzz targets (fuzz/corpus/<target>/).

Run from the repository root: ``python3 fuzz/seeds.py``. The seeds are
small hand-made starting points; what the fuzzer finds while running goes
to fuzz/grown/ (ignored by git).
"""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path

CORPUS = Path(__file__).parent / "corpus"

PEM_BODY = [
    "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj",
    "MzEfYyjiWA4R4/M2bS1GB4t7NXp98C3SC6dVMvDuictGeurT8jNbvJZHtCSuYEvu",
    "RkcJ9xUxK8mBd7Qw3TzXa1vLmN0pQrStUvWxYz==",
]

DOTENV: dict[str, str | bytes] = {
    "plain": "A=1\nB=two\n",
    "export": "export A=1\nexport\tB=2\nexport\nexport=3\n",
    "comments": "# full\n  # indented\nA=1 # inline\nB=1#not\nC='q' # c\nD=\"q\"#c\nE= #empty\n",
    "blanks-unicode": "A=a\u00a0#c\nB=b\x0b# c\nC=c\u3000\nD=\u2003d\nE\u00a0=1\nF=g\x1c\n",
    "quotes": "A='single'\nB='it\\'s'\nC=\"say \\\"hi\\\"\"\nD='back\\\\slash'\n"
    'E="\\a\\b\\f\\n\\r\\t\\v\\q"\n',
    "escaped-backslash-closes": "A='x\\\\'\nB='y'\nC=\"z\\\\\" # c\n",
    "multiline": "A=\"line one\nline two\"\nB='one\n\ntwo'\nC=after\n",
    "quoted-keys": "'quoted key'=1\n'k=v'=2\n'multi\nline'=4\n''=5\n",
    "odd-keys": "a.b=1\nk-y=2\nk/y=3\n\u00e9t\u00e9=4\nK:Y=5\n$X=6\n",
    "crlf-cr": b"A=1\r\nB='x\r\ny'\r\nC=3\rD=4\r",
    "bom": b"\xef\xbb\xbfA=1\nB=2\n",
    "two-boms": b"\xef\xbb\xbf\xef\xbb\xbfA=1\n",
    "interpolation": "A=1\nB=${A}\nC=pre-${A}-post\nD=\"${A}\"\nE='${A}'\nF=${EXT}${EMPTY:-d}${NOPE:-x}\n",
    "reference-shapes": "A=$A ${A\nB=${A:b}\nC=${X${Y}}\nD=$${EXT}\nE=${A:-x:-y}}\nF=${NOPE:-\nG=${}\n",
    "reference-escapes": 'A="${NOPE:-a\\tb}"\nB="${EXT}\\n"\nC="${EXT:-\\"}"\nD="${NOPE:-one\ntwo}"\n',
    "duplicates": "A=1\nB=2\nA=3\nA\nB=${A}\n",
    "expansion-doubling": "A=xxxxxxxx\n"
    + "".join(f"{b}=${{{a}}}${{{a}}}\n" for a, b in itertools.pairwise("ABCDEFGHIJKLMNOPQRSTUVWXYZ")),
    "expansion-fan-out": "V=" + "v" * 1000 + "\n" + "W=" + "${V}" * 200 + "\n" + "BIG2=${BIG}${BIG}\n",
    "problems": "=x\nA B\nA='unterminated\nB=\"v\" junk\n'k\nC=1\n",
    "skip-runs-on": "A='x\ny' junk\nB=1\nC='ends with backslash\\'\nD=2\n",
    "backslash-at-end": 'A=1\nB="x\\',
    "nul": b"A=1\n# a NUL \x00 in a comment\nB=2\n",
    "not-utf8": b"A=1\nB=\xff\xfe\nC=3\n",
    "pem-unquoted": "TLS_KEY=-----BEGIN PRIVATE KEY-----\n"
    + "\n".join(PEM_BODY)
    + "\n-----END PRIVATE KEY-----\nNEXT=1\n",
    "pem-quoted": 'TLS_KEY="-----BEGIN PRIVATE KEY-----\n'
    + "\n".join(PEM_BODY)
    + '\n-----END PRIVATE KEY-----"\nNEXT=1\n',
    "pem-unclosed": "K=-----BEGIN EC PRIVATE KEY-----\n" + "\n".join(PEM_BODY) + "\nA=1\n",
    "whitespace-only": "\n\r\n  \n\t\x0c\x0b\u2028\u3000\n",
    "equals": "A=b=c\nB='=='\nC===\nD=#x\nE= #x\n",
}


VAULT_JSON: dict[str, str | bytes] = {
    "kv2": '{"request_id":"r","lease_id":"","renewable":false,"lease_duration":0,'
    '"data":{"data":{"password":"p\\"w\\u00e9\\ud83d\\ude00","port":5432},"metadata":{"version":1}},'
    '"wrap_info":null,"warnings":null,"auth":null}',
    "database": '{"lease_id":"database/creds/app/x","renewable":true,"lease_duration":3600,'
    '"data":{"username":"v-app","password":"A1a-xyz"},"warnings":["w"]}',
    "login": '{"auth":{"client_token":"s.tok","accessor":"a","policies":["default"],'
    '"lease_duration":2764800,"renewable":true},"data":null}',
    "pki": '{"data":{"ca_chain":["-----BEGIN CERTIFICATE-----\\nMIIB\\n-----END CERTIFICATE-----"],'
    '"expiration":1700000000,"private_key_type":"ec","ok":true,"none":null,"nested":{"a":[1,[2,{"b":[]}]]}}}',
    "errors": '{"errors":["permission denied","1 error occurred:\\n\\t* no handler"]}',
    "numbers": '{"a":-0,"b":1.5e-3,"c":12E+2,"d":0.0,"e":[1,-2,3.25]}',
    "whitespace": ' \r\n\t{ "a" : [ ] , "b" : { } }\n ',
    "bad-escape": '{"a":"\\x"}',
    "lone-surrogate": '{"a":"\\ud800x"}',
    "deep": '{"a":' + "[" * 200 + "]" * 200 + "}",
    "truncated": '{"data":{"data":{"k":"v',
    "not-utf8": b'{"a":"\xff\xfe"}',
    "duplicates": '{"x":1,"x":"two"}',
}


def slot_ops() -> dict[str, bytes]:
    """Op sequences for slot_pool (see its `fuzz_target!`): op % 9 is
    0-2 allocate (request, 2 length bytes), 3-4 free (index), 5 zeroize
    (index), 6 reserve (request, 2 x 2 length bytes, 2 counts), 7 release
    unused arenas, 8 check. Requests: 0 secretmem, 1 locked, 2 unlocked,
    3 auto, 4 transient."""

    def length(n: int) -> bytes:
        # Bit 0 chooses a slot size (0..=1024) or a large one (up to 5 pages).
        return ((n << 1) | (n > 1024)).to_bytes(2, "little")

    def alloc(req: int, n: int) -> bytes:
        return bytes([0, req]) + length(n)

    def free(i: int) -> bytes:
        return bytes([3, i])

    check, release = bytes([8]), bytes([7])
    seeds = {
        "each-request-small": b"".join(alloc(r, 32) for r in range(5))
        + check
        + b"".join(free(0) for _ in range(5)),
        "each-request-large": b"".join(alloc(r, 5000) for r in range(5)) + check + free(2) + free(0) + check,
        "class-boundaries": b"".join(
            alloc(2, n)
            for n in (0, 16, 17, 32, 33, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1025, 4088, 4089)
        )
        + check,
        "locked-page-and-a-half": b"".join(alloc(1, 32) for _ in range(150))
        + check
        + b"".join(free(100) for _ in range(40))
        + check,
        "secretmem-churn": b"".join(alloc(0, 64) + free(0) for _ in range(20)) + check,
        "zeroize": alloc(3, 100) + alloc(3, 2000) + bytes([5, 0, 5, 1]) + check,
        "reserve-then-release": bytes([6, 3])
        + length(32)
        + length(700)
        + bytes([100, 20])
        + alloc(3, 32)
        + check
        + release
        + check,
        "reserve-locked-large-batch": bytes([6, 1])
        + length(48)
        + length(48)
        + bytes([255, 255])
        + check
        + release
        + check,
    }
    return seeds


def redact_inputs() -> dict[str, bytes]:
    """Inputs for redact_stream (see its header): secret count - 1, each
    secret as (length - 6, bytes), flags (bit 0: pause at the cuts), cut
    count and cuts, then text where 0xF0 k / 0xF1 k / 0xF2 k insert secret
    k, its base64 after k mod 3 bytes, its first half."""

    def secrets_(*values: bytes) -> bytes:
        return bytes([len(values) - 1]) + b"".join(bytes([len(v) - 6]) + v for v in values)

    def cuts(*at: int) -> bytes:
        return bytes([len(at), *at])

    one = secrets_(b"correct-horse")
    two = secrets_(b"correct-horse", b"horse-battery")
    pem = secrets_(b"--B--\nMIIEvQIBADAN\n--E--\n")  # a PEM-like value (at most 32 bytes here)
    return {
        "raw-and-base64": one + b"\x00" + cuts(40, 90, 200) + b"pw=\xf0\x00 auth \xf1\x01 \xf1\x02 end",
        "overlap": two + b"\x00" + cuts(10, 30) + b"<correct-horse-battery> \xf0\x01\xf0\x00",
        "partial-tail-paused": one + b"\x01" + cuts(64, 128) + b"x \xf2\x00 and \xf2\x00\xf0\x00",
        "escapes": secrets_(b'p"w\\d/ x\x01y') + b"\x00" + cuts(100) + b'{"pw": "p\\"w\\\\d/ x\\u0001y"}',
        "pem-lines": pem + b"\x00" + cuts(20, 60) + b"key: MIIEvQIBADAN\n\xf0\x00",
        "binary": one + b"\x00" + cuts(1, 2, 3) + bytes(range(256)) + b"\xf0\x00\xff\xfe",
    }


def main() -> None:
    for target, seeds in (
        ("dotenv_parse", {k: v.encode() if isinstance(v, str) else v for k, v in DOTENV.items()}),
        ("slot_pool", slot_ops()),
        ("vault_json", {k: v.encode() if isinstance(v, str) else v for k, v in VAULT_JSON.items()}),
        ("redact_stream", redact_inputs()),
    ):
        out = CORPUS / target
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        for name, content in seeds.items():
            (out / name).write_bytes(content)


if __name__ == "__main__":
    main()
