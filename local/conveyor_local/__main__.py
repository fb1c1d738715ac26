"""`python -m conveyor_local start|stop|describe|airflow|seed`: the no-Docker local stack."""

from __future__ import annotations

import argparse
import json
import sys

from conveyor_local import stack


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m conveyor_local", description=__doc__)
    parser.add_argument(
        "command",
        choices=["start", "stop", "describe", "airflow", "seed", "provision"],
        help="start: moto + Postgres + provisioning + .local/env.sh (harmless when up); "
        "stop: stop what start started; describe: JSON of every resource, connection and DSN; "
        "airflow: start Airflow (api-server, scheduler, dag-processor, triggerer) on the stack; "
        "seed: put the sample data back as it was (source files, the ToteSys database); "
        "provision: create the AWS resources at --endpoint-url (e.g. a moto container)",
    )
    parser.add_argument("--endpoint-url", help="with provision: the AWS endpoint (moto, LocalStack)")
    args = parser.parse_args(argv)
    if args.command == "provision":
        if not args.endpoint_url:
            parser.error("provision needs --endpoint-url")
        json.dump(stack.provision_endpoint(args.endpoint_url), sys.stdout, indent=2)
        print()
        return 0
    if args.command == "start":
        stack.start()
    elif args.command == "stop":
        stack.stop()
    elif args.command == "seed":
        stack.seed(force=True)
    elif args.command == "describe":
        json.dump(stack.describe(), sys.stdout, indent=2)
        print()
    else:
        stack.run_airflow_ui()
    return 0


if __name__ == "__main__":
    sys.exit(main())
