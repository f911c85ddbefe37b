"""A gateway process for the channel benchmark: one model, one upstream of the kind named on the command line.

python bench/gateway/run_gateway.py --model FILE --port P --upstream inprocess|unix:PATH|tcp:H:P|http:H:P
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from conveyor.gateway import Gateway, InProcessUpstream, OutlierState, Replica, Route, RoutingTable
from conveyor.gateway.app import create_gateway_app, serve_gateway
from conveyor.gateway.channel import ChannelUpstream
from conveyor.gateway.upstream import Upstream
from conveyor.runtime import OnnxModel
from conveyor.server.dataplane import DataPlane
from conveyor.settings import Settings

sys.path.insert(0, str(Path(__file__).parent))
from http_upstream import HttpUpstream


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--upstream", required=True)
    args = ap.parse_args()
    settings = Settings()
    upstream: Upstream
    if args.upstream == "inprocess":
        model = OnnxModel(args.model.read_bytes(), name=args.model.stem, version=None)
        upstream = InProcessUpstream(DataPlane.from_settings([model], settings))
    elif args.upstream.startswith("http:"):
        host, port = args.upstream.removeprefix("http:").rsplit(":", 1)
        upstream = HttpUpstream(host, int(port))
    else:
        upstream = ChannelUpstream(args.upstream)
    route = Route(args.model.stem, None, [Replica(upstream, OutlierState(3))])
    gateway = Gateway(RoutingTable([route]))
    app = create_gateway_app(gateway, settings)
    serve_gateway(app, port=args.port, on_ready=lambda url: print(f"gateway on {url}", flush=True))


if __name__ == "__main__":
    main()
