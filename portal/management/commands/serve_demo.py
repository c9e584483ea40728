import signal
import subprocess
import sys
import threading
import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from portal.demo import demo_login_lines
from portal.demo_serving import demo_gateway_line, demo_traffic
from portal.env import env_int


class Command(BaseCommand):
    help = "Serve the portal (daphne) with a Celery worker until Ctrl-C; used by `make demo`."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)

    def handle(self, *args, host, port, **options):
        python = sys.executable
        children = [
            subprocess.Popen(  # noqa: S603 - fixed argv
                [python, "-m", "daphne", "-b", host, "-p", str(port), "portal.asgi:application"]
            ),
            # Quick jobs (imports, checks, pushes) and the housekeeping schedule (beat)...
            _worker(python, "default", queues="default", concurrency=2, beat=True),
            # ...apart from training and generation, one at a time, as on a GPU machine.
            _worker(python, "gpu", queues="gpu", concurrency=1),
            # The serving worker: a `transformers serve` per model the deployments place.
            subprocess.Popen([python, str(settings.BASE_DIR / "manage.py"), "run_engines"]),  # noqa: S603
        ]
        stop = False

        def on_signal(signum, frame):
            nonlocal stop
            stop = True

        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
        self.stdout.write(self.style.SUCCESS(f"\nTuning Portal: http://{host}:{port}/"))
        self.stdout.write("Demo logins (username / password):")
        for line in demo_login_lines():
            self.stdout.write(line)
        line = demo_gateway_line(host, port)
        if line:
            self.stdout.write("The demo deployment's gateway (paste into a shell):")
            self.stdout.write(f"  {line}")
            every = env_int("PORTAL_DEMO_TRAFFIC_SECONDS", 20)
            if every > 0:  # simulated users, so the deployment page's charts have data
                key = line.rsplit("=", 1)[1]
                threading.Thread(
                    target=demo_traffic,
                    kwargs={
                        "base_url": f"http://{host}:{port}/v1",
                        "key": key,
                        "every_s": every,
                        "stop": lambda: stop,
                    },
                    daemon=True,
                ).start()
        self.stdout.write("Press Ctrl-C to stop the web server and the worker.\n")
        try:
            while not stop:
                for child in children:
                    if child.poll() is not None:
                        raise CommandError(f"{child.args[2]} exited with {child.returncode}")
                time.sleep(0.5)
        finally:
            for child in children:
                if child.poll() is None:
                    child.send_signal(signal.SIGTERM)
            for child in children:
                try:
                    child.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    child.kill()
            self.stdout.write("Stopped.")


def _worker(python: str, name: str, *, queues: str, concurrency: int, beat: bool = False):
    argv = [python, "-m", "celery", "-A", "portal", "worker", "-n", f"{name}@%h", "-Q", queues]
    argv += ["--concurrency", str(concurrency), "--without-gossip", "--without-mingle"]
    argv += ["-l", "warning"] + (["-B"] if beat else [])
    return subprocess.Popen(argv)  # noqa: S603 - fixed argv
