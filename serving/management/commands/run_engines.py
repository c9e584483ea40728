import logging
import signal

from django.core.management.base import BaseCommand

from serving.engine_supervisor import EngineSupervisor


class Command(BaseCommand):
    help = (
        "The serving worker: start, health-check, restart and stop one `transformers serve` "
        "per model the deployments place, until Ctrl-C or SIGTERM."
    )

    def add_arguments(self, parser):
        parser.add_argument("--device", default="auto", help="cpu, cuda:0 or auto")
        parser.add_argument("--interval", type=float, default=1.0, help="seconds between passes")
        parser.add_argument("--log-dir", default=None, help="engine logs (default var/engines)")
        parser.add_argument("--bind", default="127.0.0.1", help="address engines listen on")
        parser.add_argument(
            "--advertise", default="", help="host the gateway reaches engines at (default: bind)"
        )

    def handle(self, *args, device, interval, log_dir, bind, advertise, **options):
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
        stopping = False

        def on_signal(signum, frame):
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
        supervisor = EngineSupervisor(
            device=device, log_dir=log_dir, bind=bind, advertise=advertise
        )
        self.stdout.write(f"Serving worker {supervisor.worker}: watching deployments.")
        supervisor.run(stop=lambda: stopping, interval=interval)
        self.stdout.write("Serving worker stopped.")
