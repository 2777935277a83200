"""Real syslog peers on 127.0.0.1 for the syslog sink tests.

* :class:`Rsyslogd`: a real rsyslogd in the foreground (``rsyslogd -n -f CONF -i PIDFILE``), unprivileged
  ports, imudp + imtcp, every message written by omfile as one JSON object per line with the raw
  message and what rsyslog's own parser made of it (protocol-version, app-name, msgid, structured-data…).
* :func:`parse_5424`: a strict RFC 5424 parser (rejects anything malformed).
* :class:`StrictSyslogServer`: a TCP (optionally TLS) receiver with RFC 6587 octet counting (or LF)
  framing that parses every message strictly; can reset mid-batch, or accept and never read.
* :func:`make_cert`: a self-signed CA and a server (or client) certificate signed by it.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
import socket
import struct
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

INSTALL_HINT = "rsyslogd is not installed: install the Debian package with `apt-get install -y rsyslog`"


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- rsyslogd --------------------------------------------------------------------------------------

_PROPS = ["rawmsg", "protocol-version", "pri", "syslogfacility", "syslogseverity", "hostname", "app-name",
          "procid", "msgid", "structured-data", "msg", "programname", "inputname"]


class Rsyslogd:
    def __init__(self, workdir: Path, udp_port: int | None = None, tcp_port: int | None = None):
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.udp_port = udp_port or free_port(socket.SOCK_DGRAM)
        self.tcp_port = tcp_port or free_port()
        self.out = self.dir / "messages.jsonl"
        self.conf = self.dir / "rsyslog.conf"
        self.proc: subprocess.Popen | None = None
        props = "\n".join(f'  property(outname="{p}" name="{p}" format="jsonf")' for p in _PROPS)
        self.conf.write_text(f"""
global(workDirectory="{self.dir}" maxMessageSize="128k")
module(load="imudp")
module(load="imtcp")
input(type="imudp" address="127.0.0.1" port="{self.udp_port}")
input(type="imtcp" address="127.0.0.1" port="{self.tcp_port}")
template(name="soclake_test" type="list" option.jsonf="on") {{
{props}
  property(outname="timereported" name="timereported" dateFormat="rfc3339" format="jsonf")
}}
action(type="omfile" file="{self.out}" template="soclake_test")
""")

    def start(self, timeout: float = 15) -> Rsyslogd:
        exe = shutil.which("rsyslogd") or shutil.which("rsyslogd", path="/usr/sbin:/sbin")
        if exe is None:
            raise RuntimeError(INSTALL_HINT)
        self.log = open(self.dir / "rsyslogd.log", "ab")
        self.proc = subprocess.Popen([exe, "-n", "-f", str(self.conf), "-i", str(self.dir / "rsyslogd.pid")],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + timeout
        while True:  # ready once it accepts on TCP and a UDP probe reached the output file
            if self.proc.poll() is not None:
                raise RuntimeError(f"rsyslogd exited: {(self.dir / 'rsyslogd.log').read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.tcp_port), timeout=0.5):
                    pass
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                    u.sendto(b"<14>1 - - probe - - - ready", ("127.0.0.1", self.udp_port))
                if any(r["app-name"] == "probe" for r in self.records(all_apps=True)):
                    return self
            except OSError:
                pass
            if time.time() > deadline:
                self.stop()
                raise RuntimeError("rsyslogd did not become ready")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def records(self, all_apps: bool = False) -> list[dict]:
        if not self.out.exists():
            return []
        lines = [ln for ln in self.out.read_text().splitlines() if ln.strip()]
        recs = [json.loads(ln) for ln in lines]
        return recs if all_apps else [r for r in recs if r["app-name"] != "probe"]

    def wait_for(self, count: int, timeout: float = 10, settle: float = 0.2) -> list[dict]:
        """Records (probe excluded) once at least ``count`` arrived, plus whatever came within ``settle``."""
        deadline = time.time() + timeout
        while len(self.records()) < count and time.time() < deadline:
            time.sleep(0.05)
        time.sleep(settle)
        return self.records()


# --- strict RFC 5424 ---------------------------------------------------------------------------------

class Malformed(ValueError):
    pass


@dataclass
class Message:
    pri: int
    version: int
    timestamp: dt.datetime | None
    hostname: str | None
    app_name: str | None
    procid: str | None
    msgid: str | None
    sd: list[tuple[str, dict[str, str]]]
    msg: str

    @property
    def facility(self) -> int:
        return self.pri // 8

    @property
    def severity(self) -> int:
        return self.pri % 8


_TS = re.compile(r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,6}))?(Z|[+-]\d{2}:\d{2})\Z")
_IANA_SD_IDS = {"timeQuality", "origin", "meta"}


def _field(data: bytes, pos: int, limit: int, what: str) -> tuple[str | None, int]:
    end = data.find(b" ", pos)
    if end < 0:
        raise Malformed(f"{what}: no SP after it")
    tok = data[pos:end]
    if not tok or len(tok) > limit or any(not 33 <= b <= 126 for b in tok):
        raise Malformed(f"{what}: {tok!r} is not 1-{limit} PRINTUSASCII")
    return (None if tok == b"-" else tok.decode("ascii")), end + 1


def _timestamp(tok: str | None) -> dt.datetime | None:
    if tok is None:
        return None
    m = _TS.match(tok)
    if not m:
        raise Malformed(f"TIMESTAMP {tok!r} is not RFC 3339 as RFC 5424 restricts it")
    y, mo, d, h, mi, s, frac, off = m.groups()
    tz = dt.UTC if off == "Z" else dt.timezone((-1 if off[0] == "-" else 1) * dt.timedelta(hours=int(off[1:3]), minutes=int(off[4:])))
    try:
        return dt.datetime(int(y), int(mo), int(d), int(h), int(mi), int(s), int((frac or "0").ljust(6, "0")), tz)
    except ValueError as e:
        raise Malformed(f"TIMESTAMP {tok!r}: {e}") from None


def _sd_name(data: bytes, pos: int, what: str) -> tuple[str, int]:
    start = pos
    while pos < len(data) and 33 <= data[pos] <= 126 and data[pos] not in b'= ]"':
        pos += 1
    name = data[start:pos]
    if not 1 <= len(name) <= 32:
        raise Malformed(f"{what} {name!r} is not 1-32 SD-NAME characters")
    return name.decode("ascii"), pos


def _structured_data(data: bytes, pos: int) -> tuple[list, int]:
    if data[pos:pos + 1] == b"-":
        return [], pos + 1
    elements = []
    while data[pos:pos + 1] == b"[":
        pos += 1
        sd_id, pos = _sd_name(data, pos, "SD-ID")
        if "@" in sd_id:
            name, _, pen = sd_id.partition("@")
            if not name or not pen.isdigit() or "@" in pen:
                raise Malformed(f"SD-ID {sd_id!r} is not name@<private enterprise number>")
        elif sd_id not in _IANA_SD_IDS:
            raise Malformed(f"SD-ID {sd_id!r} is neither IANA-registered nor name@number")
        params: dict[str, str] = {}
        while data[pos:pos + 1] == b" ":
            name, pos = _sd_name(data, pos + 1, "PARAM-NAME")
            if data[pos:pos + 2] != b'="':
                raise Malformed(f"PARAM {name}: expected '=\"'")
            pos += 2
            value = bytearray()
            while True:
                if pos >= len(data):
                    raise Malformed(f"PARAM {name}: unterminated value")
                c = data[pos]
                if c == 0x5C and data[pos + 1:pos + 2] in (b'"', b"\\", b"]"):
                    value += data[pos + 1:pos + 2]
                    pos += 2
                elif c == 0x22:
                    pos += 1
                    break
                elif c == 0x5D:
                    raise Malformed(f"PARAM {name}: unescaped ']' in value")
                else:
                    value.append(c)
                    pos += 1
            try:
                params[name] = value.decode("utf-8")
            except UnicodeDecodeError:
                raise Malformed(f"PARAM {name}: value is not UTF-8") from None
        if data[pos:pos + 1] != b"]":
            raise Malformed(f"SD-ELEMENT {sd_id}: expected ']' at offset {pos}")
        pos += 1
        elements.append((sd_id, params))
    if not elements:
        raise Malformed("STRUCTURED-DATA: neither '-' nor an SD-ELEMENT")
    return elements, pos


def parse_5424(data: bytes) -> Message:
    m = re.match(rb"<(0|[1-9]\d{0,2})>([1-9]\d{0,2}) ", data)
    if not m:
        raise Malformed(f"no <PRI>VERSION SP header: {data[:20]!r}")
    pri, version = int(m.group(1)), int(m.group(2))
    if pri > 191:
        raise Malformed(f"PRI {pri} > 191")
    if version != 1:
        raise Malformed(f"VERSION {version} != 1")
    pos = m.end()
    ts, pos = _field(data, pos, 64, "TIMESTAMP")
    timestamp = _timestamp(ts)
    hostname, pos = _field(data, pos, 255, "HOSTNAME")
    app, pos = _field(data, pos, 48, "APP-NAME")
    procid, pos = _field(data, pos, 128, "PROCID")
    msgid, pos = _field(data, pos, 32, "MSGID")
    sd, pos = _structured_data(data, pos)
    if pos == len(data):
        msg = b""
    elif data[pos:pos + 1] == b" ":
        msg = data[pos + 1:]
    else:
        raise Malformed(f"expected SP or end after STRUCTURED-DATA at offset {pos}")
    if msg.startswith(b"\xef\xbb\xbf"):
        msg = msg[3:]
    try:  # stricter than MSG-ANY: this sink always sends UTF-8
        text = msg.decode("utf-8")
    except UnicodeDecodeError:
        raise Malformed("MSG is not UTF-8") from None
    return Message(pri, version, timestamp, hostname, app, procid, msgid, sd, text)


# --- a strict receiver ---------------------------------------------------------------------------------

@dataclass
class StrictSyslogServer:
    """Receives RFC 6587 octet-counted (or LF) RFC 5424 messages on 127.0.0.1, over TCP or TLS.

    ``reset_after``: on the first connection, reset it (RST) after that many messages, leaving the
    rest unread. ``blackhole``: accept connections and never read or close them. A malformed frame
    or message is recorded in ``errors`` and its connection dropped.
    """

    tls: object = None  # an ssl.SSLContext (server side) for TLS
    framing: str = "octet-counting"
    reset_after: int | None = None
    blackhole: bool = False
    close_notify: bool = True  # TLS: answer the client's close_notify, or just close the TCP connection
    port: int = 0
    max_size: int = 1 << 20
    messages: list[Message] = field(default_factory=list)
    raw: list[bytes] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    connections: int = 0

    def start(self) -> StrictSyslogServer:
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._held: list[socket.socket] = []
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", self.port))
        self._sock.listen(16)
        self._sock.settimeout(0.05)
        self.port = self._sock.getsockname()[1]
        t = threading.Thread(target=self._accept, daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(5)
        self._sock.close()
        for s in self._held:
            s.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def wait_for(self, count: int, timeout: float = 5) -> list[Message]:
        deadline = time.time() + timeout
        while len(self.messages) < count and time.time() < deadline:
            time.sleep(0.02)
        return list(self.messages)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.connections += 1
                n = self.connections
            if self.blackhole:
                self._held.append(conn)
                continue
            t = threading.Thread(target=self._serve, args=(conn, n), daemon=True)
            t.start()
            self._threads.append(t)

    def _serve(self, conn: socket.socket, n: int) -> None:
        conn.settimeout(0.1)
        try:
            if self.tls is not None:
                conn.settimeout(5)
                try:
                    conn = self.tls.wrap_socket(conn, server_side=True)
                except OSError as e:
                    self.errors.append(f"TLS handshake: {e}")
                    return
                conn.settimeout(0.1)
            buf, count = bytearray(), 0
            while not self._stop.is_set():
                try:
                    chunk = conn.recv(65536)
                except TimeoutError:
                    continue
                except OSError as e:
                    self.errors.append(f"connection {n}: {e}")
                    return
                if not chunk:
                    if buf:
                        self.errors.append(f"connection {n}: stream ended inside a frame: {bytes(buf[:40])!r}")
                    break
                buf += chunk
                for frame in self._frames(buf):
                    try:
                        msg = parse_5424(frame)
                    except Malformed as e:
                        self.errors.append(f"connection {n}: {e}")
                        return  # reject: drop the connection
                    self.raw.append(frame)
                    self.messages.append(msg)
                    count += 1
                    if n == 1 and self.reset_after is not None and count >= self.reset_after:
                        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                        return  # close() now sends RST: the rest of the batch is never read
            if self.tls is not None and self.close_notify and not self._stop.is_set():
                try:
                    conn = conn.unwrap()  # answer the client's close_notify
                except OSError:
                    pass
        except Malformed as e:
            self.errors.append(f"connection {n}: {e}")
        finally:
            conn.close()

    def _frames(self, buf: bytearray):
        while buf:
            if self.framing == "lf":
                end = buf.find(b"\n")
                if end < 0:
                    return
                frame = bytes(buf[:end])
                del buf[:end + 1]
                yield frame
                continue
            m = re.match(rb"([1-9]\d{0,8}) ", bytes(buf[:11]))
            if not m:
                if len(buf) >= 11 or not re.fullmatch(rb"[1-9]\d{0,9}", bytes(buf)):
                    raise Malformed(f"bad octet-counting frame header: {bytes(buf[:20])!r}")
                return
            size = int(m.group(1))
            if size > self.max_size:
                raise Malformed(f"frame of {size} bytes > {self.max_size}")
            if len(buf) < m.end() + size:
                return
            frame = bytes(buf[m.end():m.end() + size])
            del buf[:m.end() + size]
            yield frame


# --- certificates -----------------------------------------------------------------------------------------

def make_cert(directory: Path, name: str = "syslog.test", client: bool = False, password: bytes | None = None):
    """A CA and a leaf certificate for ``name`` (and 127.0.0.1) signed by it; returns paths (ca, cert, key)."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"test CA for {name}")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
          .not_valid_after(now + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    enc = serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    prefix = "client" if client else "server"
    paths = directory / f"{prefix}-ca.pem", directory / f"{prefix}.pem", directory / f"{prefix}.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc))
    return tuple(str(p) for p in paths)
