"""A child process for the socket-activation test: serves the on-device API on fd 3.

Run as ``python systemd_child.py STATE_DIR FD``: moves the inherited listening socket ``FD``
to descriptor 3 and sets ``LISTEN_PID``/``LISTEN_FDS`` as systemd does, serves until its
stdin closes, then stops.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from fleetconfig.agent.device_api import DeviceApiServer, SyncResult
from fleetconfig.agent.store import Store


class Offline:
    async def request_sync(self) -> SyncResult:
        return SyncResult(code="network_connection_error", message="no server in this test")


async def serve(state_dir: Path) -> None:
    store = Store.open(state_dir)
    server = DeviceApiServer(store, Offline(), socket_path=Path("/nonexistent/never-bound.sock"))
    await server.start()
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await server.stop()
    store.close()
    print("stopped", flush=True)


def main() -> None:
    state_dir, inherited = Path(sys.argv[1]), int(sys.argv[2])
    if inherited != 3:
        os.dup2(inherited, 3)
        os.close(inherited)
    os.environ["LISTEN_PID"] = str(os.getpid())
    os.environ["LISTEN_FDS"] = "1"
    asyncio.run(serve(state_dir))


if __name__ == "__main__":
    main()
