"""A child process that ends when its parent does, however the parent ended (SIGKILL too).

``fleetconfig demo`` runs the server and the agent as children in sessions of their own
(so that Ctrl-C reaches only the demo, which stops them in order). Killed with SIGKILL, the
demo gets no chance to stop them. So each child holds the read end of a pipe whose write
end only the demo holds: the kernel closes that end when the demo dies, the child's read
returns end-of-file, and the child stops itself as on SIGTERM. A blocked read costs no CPU
(no polling of the parent's pid), and it works the same on Linux and macOS (unlike
``PR_SET_PDEATHSIG``, which fires when the parent *thread* ends).
"""

from __future__ import annotations

import os
import signal
import threading
import time

# The number of the inherited file descriptor (the read end), set by the parent.
ENV = "FLEETCONFIG_LIFELINE_FD"
# After SIGTERM, how long a child may take to stop before it exits hard.
GRACE_SECONDS = 15.0


def new() -> tuple[int, int]:
    """A lifeline for one child: ``(read_fd, write_fd)``. Pass ``read_fd`` to the child
    (``pass_fds`` and :data:`ENV`), close it here after the start, keep ``write_fd`` open
    as long as the child should live."""
    return os.pipe()


def hold_from_environment() -> None:
    """In the child: if the parent handed a lifeline, stop when it breaks. The variable is
    removed, so that the child's own children do not act on it."""
    value = os.environ.pop(ENV, None)
    if not value:
        return
    try:
        fd = int(value)
        os.set_inheritable(fd, False)
    except (ValueError, OSError):
        return  # not a descriptor of ours: nothing to hold
    threading.Thread(target=_wait_for_parent, args=(fd,), name="lifeline", daemon=True).start()


def _wait_for_parent(fd: int) -> None:
    try:
        while os.read(fd, 64):
            pass  # the parent never writes; anything written is ignored
    except OSError:
        pass
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(GRACE_SECONDS)
    os._exit(1)
