"""A real nginx in front of a test server: a non-daemon subprocess with its own config.

The config is the stream location of the deployment how-to
(docs/howto/deployment.md), complete (upstream block, ``Host`` and
``X-Forwarded-*`` headers), so tests see what a deployment following the how-to
sees. Everything nginx writes (config, logs, temp files, pid) lives in
one temporary directory.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from tests.server import free_port, stop_process, wait_until_serving

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"

CONFIG = """
daemon off;
master_process on;
worker_processes 1;
{user}
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log {dir}/access.log;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;

    upstream app {{
        server {upstream};
        keepalive 16;
    }}

    server {{
        listen 127.0.0.1:{port};
        # For every location (inherited by those that set no proxy_set_header).
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Host $host;
        proxy_set_header X-Forwarded-For $remote_addr;   # overwrite what the client sent
        proxy_set_header X-Forwarded-Proto $scheme;

        location /sse/ {{
            proxy_pass http://app;
            proxy_buffering off;          # the app also sends X-Accel-Buffering: no
            proxy_cache off;
            gzip off;
            proxy_read_timeout 1h;        # any value above KEEPALIVE (15 s)
        }}

        location / {{
            proxy_pass http://app;
        }}
    }}
}}
"""


class Nginx:
    """nginx on a free port of 127.0.0.1, proxying to ``upstream``
    (``127.0.0.1:8000`` or ``unix:/path/to.sock``)."""

    def __init__(self, upstream: str, directory: Path) -> None:
        self.upstream = upstream
        self.dir = directory
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 15) -> "Nginx":
        self.dir.mkdir(parents=True, exist_ok=True)
        user = "user root root;" if os.geteuid() == 0 else ""
        conf = self.dir / "nginx.conf"
        conf.write_text(CONFIG.format(dir=self.dir, port=self.port, upstream=self.upstream,
                                      user=user))
        self.proc = subprocess.Popen([NGINX, "-p", str(self.dir), "-c", str(conf),
                                      "-e", str(self.dir / "error.log")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        wait_until_serving(self.proc, self.base_url + "/control/hub", timeout,
                           lambda: f"nginx: {self.log()}")
        return self

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)

    def log(self) -> str:
        path = self.dir / "error.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""

    def __enter__(self) -> "Nginx":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
