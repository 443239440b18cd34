#!/usr/bin/env python3
"""Print a source-salesforce config (JSON) that authenticates against the local emulator.

The credentials are the emulator's defaults (crates/salesforce-emulator Config::default()):
client_id `emulator-client-id`, client_secret `emulator-client-secret`, refresh_token
`emulator-refresh-token`. Any extra option of the connector's spec can be set with flags.

    python3 tools/reference-source/make_config.py --start-date 2020-01-01T00:00:00Z > config.json
    python3 tools/reference-source/make_config.py --force-use-bulk-api --stream-slice-step P3650D
"""

import argparse
import json
import sys

DEFAULTS = {
    "client_id": "emulator-client-id",
    "client_secret": "emulator-client-secret",
    "refresh_token": "emulator-refresh-token",
}


def build(args: argparse.Namespace) -> dict:
    config = {"auth_type": "Client", "is_sandbox": False, **DEFAULTS}
    for key in ("client_id", "client_secret", "refresh_token", "start_date", "end_date", "stream_slice_step", "lookback_window"):
        value = getattr(args, key)
        if value is not None:
            config[key] = value
    if args.force_use_bulk_api:
        config["force_use_bulk_api"] = True
    if args.sandbox:
        config["is_sandbox"] = True
    if args.streams_contains:
        config["streams_criteria"] = [{"criteria": "contains", "value": v} for v in args.streams_contains]
    return config


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--client-id", dest="client_id")
    p.add_argument("--client-secret", dest="client_secret")
    p.add_argument("--refresh-token", dest="refresh_token")
    p.add_argument("--start-date", dest="start_date", help="YYYY-MM-DD or YYYY-MM-DDTHH:mm:ssZ")
    p.add_argument("--end-date", dest="end_date")
    p.add_argument("--stream-slice-step", dest="stream_slice_step", help="ISO-8601 duration, e.g. P30D")
    p.add_argument("--lookback-window", dest="lookback_window", help="ISO-8601 duration, e.g. PT10M")
    p.add_argument("--force-use-bulk-api", action="store_true")
    p.add_argument("--sandbox", action="store_true", help="is_sandbox=true (token host test.salesforce.com)")
    p.add_argument("--streams-contains", action="append", metavar="TEXT", help="streams_criteria 'contains' (repeatable)")
    json.dump(build(p.parse_args()), sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
