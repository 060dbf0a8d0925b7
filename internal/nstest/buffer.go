package nstest

import "syscall"

// termSignal is what Process.Stop sends so daemons exit cleanly.
const termSignal = syscall.SIGTERM
