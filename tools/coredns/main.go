// CoreDNS at the version pinned in tools/versions.env, with the plugins of kubeadm's Corefile
// (cluster.local from the API server, everything else forwarded) and `bind`. Upstream's own main
// (github.com/coredns/coredns) links every plugin, cloud DNS clients included; this is that main
// with a smaller plugin list, built by scripts/build-node-tools.sh.
package main

import (
	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/forward"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/loop"
	_ "github.com/coredns/coredns/plugin/ready"
	_ "github.com/coredns/coredns/plugin/reload"

	"github.com/coredns/coredns/coremain"
)

func main() {
	coremain.Run()
}
