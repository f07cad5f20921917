// The real testbed node's sandbox image: it holds the Pod's namespaces and exits on SIGTERM or
// SIGINT, like Kubernetes' pause container. Built static by hack/build-images.sh.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	<-signals
}
