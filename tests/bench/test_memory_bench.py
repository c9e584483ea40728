import http.client
import socket
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from annotation.services.snapshots import snapshot_create
from tests.annotation.factories import DatasetFactory, classification_setup
from tests.bench.test_curation_bench import _fill
from tests.portal.factories import api_key_for
from tests.support import servers

pytestmark = pytest.mark.django_db(transaction=True)

BODY_BYTES = 300 * 1024**2
ITEMS = 1_000_000


@pytest.fixture
def server(test_database_url, server_log_dir):
    """A uvicorn process of our own, so its memory is measured alone."""
    child, base_url = servers.start_asgi_server(
        servers.child_env(test_database_url), server_log_dir
    )
    yield child.proc.pid, base_url
    child.stop()


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


class PeakRss:
    """Samples a process's resident memory every 20 ms on a thread of its own."""

    def __init__(self, pid: int):
        self.pid = pid
        self.baseline = _rss(pid)
        self.peak = self.baseline
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self):
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, _rss(self.pid))

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss(self.pid))

    @property
    def growth_mb(self) -> float:
        return (self.peak - self.baseline) / 2**20


def _send_body(base_url: str, path: str, *, chunked: bool) -> bytes:
    """POST BODY_BYTES of multipart-looking bytes without credentials, from a generator,
    as fast as the server takes them; returns the status line the server answered."""
    url = urlsplit(base_url)
    sock = socket.create_connection((url.hostname, url.port), timeout=60)
    framing = (
        b"Transfer-Encoding: chunked\r\n"
        if chunked
        else f"Content-Length: {BODY_BYTES}\r\n".encode()
    )
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n".encode()
        + b"Content-Type: multipart/form-data; boundary=bench\r\n"
        + framing
        + b"\r\n"
    )
    answer = bytearray()

    def read_answer():
        while b"\r\n" not in answer:
            try:
                data = sock.recv(65536)
            except OSError:
                return
            if not data:
                return
            answer.extend(data)

    reader = threading.Thread(target=read_answer)
    reader.start()
    chunk = b"x" * (1024**2)
    # One form field of nearly BODY_BYTES (a multipart part without a file name).
    part = b'--bench\r\nContent-Disposition: form-data; name="username"\r\n\r\n'
    tail = b"\r\n--bench--\r\n"
    chunks = [part + chunk[len(part) :]] + [chunk] * (BODY_BYTES // len(chunk) - 2)
    chunks.append(chunk[len(tail) :] + tail)
    try:
        sock.sendall(head)
        for chunk in chunks:
            if answer:
                break  # refused: stop sending, as a client reading the answer would
            sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk)
        else:
            if chunked:
                sock.sendall(b"0\r\n\r\n")
    except OSError:
        pass  # the server closed the connection after refusing
    reader.join(timeout=60)
    sock.close()
    return bytes(answer).split(b"\r\n", 1)[0]


@pytest.mark.parametrize(
    ("name", "path", "chunked", "status"),
    [
        ("login_content_length", "/accounts/login/", False, b"413"),
        ("login_chunked", "/accounts/login/", True, b"413"),
        # Within the 2 GiB upload limit: read to a temporary file, then no credentials (401).
        ("upload_api_unauthenticated", "/api/v1/projects/1/datasets/", False, b"401"),
    ],
)
def test_server_memory_while_a_300mb_body_is_refused(server, report, name, path, chunked, status):
    pid, base_url = server

    start = time.perf_counter()
    with PeakRss(pid) as rss:
        answer = _send_body(base_url, path, chunked=chunked)
    elapsed = time.perf_counter() - start

    report(f"refuse_300mb_body_{name}_rss_growth_mb", rss.growth_mb, "MB")
    report(f"refuse_300mb_body_{name}_s", elapsed, "s")
    assert status in answer, answer
    assert rss.growth_mb < 100


@pytest.mark.timeout(1800)  # filling and snapshotting a million items come first
def test_server_memory_while_a_1m_item_export_downloads(server, report, project, member_of):
    pid, base_url = server
    engineer = member_of("engineer")
    classification_setup(project)
    _fill(DatasetFactory(project=project), ITEMS, "'short text number ' || g || ' about it'")
    snapshot = snapshot_create(actor=engineer, project=project, name="bench", seed=1)
    token = api_key_for(engineer)
    url = urlsplit(base_url)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=300)

    start = time.perf_counter()
    with PeakRss(pid) as rss:
        connection.request(
            "GET",
            f"/api/v1/projects/{project.pk}/snapshots/{snapshot.pk}/export/sft/",
            headers={"Authorization": f"Token {token}"},
        )
        response = connection.getresponse()
        first_byte = None
        lines = 0
        while chunk := response.read(1 << 20):
            if first_byte is None:
                first_byte = time.perf_counter() - start
            lines += chunk.count(b"\n")
    elapsed = time.perf_counter() - start
    connection.close()

    assert response.status == 200
    assert lines == ITEMS
    report("export_sft_1m_items_http_first_byte_s", first_byte, "s")
    report("export_sft_1m_items_http_s", elapsed, "s")
    report("export_sft_1m_items_http_server_rss_growth_mb", rss.growth_mb, "MB")
    assert rss.growth_mb < 100
