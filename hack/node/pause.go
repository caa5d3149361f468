// The sandbox process of every pod on the local real node: it holds the pod's namespaces
// open, reaps the orphans it inherits as the pod's first process, and exits cleanly when
// the runtime asks it to stop. Built here (hack/node.sh) so that no image comes from the
// internet.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	signals := make(chan os.Signal, 4)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT, syscall.SIGCHLD)
	for s := range signals {
		if s != syscall.SIGCHLD {
			os.Exit(0)
		}
		// Reap every child that has exited, without blocking on those still running.
		for {
			pid, err := syscall.Wait4(-1, nil, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
