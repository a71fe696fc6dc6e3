#!/usr/bin/env bash
# The multi-node demo (figures F5–F7 of ../shared/scenarios.md): two nodes behind a router and a
# host outside the cluster, all throwaway namespaces. First the problem — every node's bridge uses
# the same pod subnet, so pods on different nodes get the same addresses and cannot reach each
# other — then the Kubernetes fix: one cluster-wide pod range, a slice per node (the Node's
# podCIDR), and routes "slice via node" on the router. Removes everything at the end, also on
# failure or Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
source scripts/lib/node.sh
trap node_down_all EXIT

# quiet NODE CMD...: run without printing (plumbing the reader need not see).
quiet() { in_node "$@" >/dev/null; }
val() { in_node "$@" 2>/dev/null; }
PATH=$(dirname "$PODBOX"):$PATH
WWW=$(pwd)/rootfs/var/www
pod_ip() { val "$1" "$PODBOX" pod inspect "$2" | sed -n 's/.*"ip": "\(.*\)".*/\1/p' | head -1; }
# A pod with a web server (index page + /cgi-bin/whoami, which prints the client's address).
web_pod() {
  on "$1" podbox pod create "$2"
  on "$1" podbox run --pod "$2" --name web -d -- httpd -f -p 80 -h /var/www
}

say "F5 — two nodes on a private network 10.100.0.0/24, behind a router 10.100.0.1."
for n in router node-a node-b outside; do node_up "$n"; done
on router ip link add br0 type bridge
on router ip addr add 10.100.0.1/24 dev br0
on router ip link set br0 up
on router sh -c 'echo 1 > /proc/sys/net/ipv4/ip_forward'
wire router to-a node-a eth0; wire router to-b node-b eth0
quiet router ip link set to-a master br0; quiet router ip link set to-b master br0
on node-a ip addr add 10.100.0.2/24 dev eth0
on node-b ip addr add 10.100.0.3/24 dev eth0
on node-a ip route add default via 10.100.0.1
on node-b ip route add default via 10.100.0.1
say "The nodes talk over their eth0:"
on node-a ping -c 1 -W 2 10.100.0.3

say "A host outside the cluster, 192.168.100.2, on the router's other side. It knows the way to the nodes, not to any pod range."
wire router to-outside outside eth0
on router ip addr add 192.168.100.1/24 dev to-outside
on outside ip addr add 192.168.100.2/24 dev eth0
on outside ip route add 10.100.0.0/24 via 192.168.100.1
quiet outside busybox httpd -p 80 -h "$WWW"

say "F6 — the problem. Each node runs podbox with the default config: the same bridge subnet everywhere."
on node-a podbox network config
on node-b podbox network config
web_pod node-a a1
web_pod node-b b1
web_pod node-b b2
say "Same addresses on both nodes (a1 on A, b1 on B):"
on node-a podbox pod ls
on node-b podbox pod ls
B2=$(pod_ip node-b b2)
say "a1 on node A asks b2 on node B ($B2): node A thinks $B2 is on its own bridge, so the packet never leaves A."
on node-a ip route get "$B2"
on node-a podbox exec a1 web -- ping -c 1 -W 2 "$B2"
on node-a podbox exec a1 web -- timeout 5 wget -qO- "http://$B2/cgi-bin/whoami"
if val node-a "$PODBOX" exec a1 web -- timeout 5 wget -qO- "http://$B2/cgi-bin/whoami" >/dev/null; then
  echo "  unexpected: it got through" >&2; exit 1
fi
echo "  (both fail, as expected: no node can know where a pod address lives)"
on node-a podbox pod rm -f a1
on node-b podbox pod rm -f b1 b2

say "F7 — the fix: one cluster range 10.0.0.0/14, a /24 slice per node (Kubernetes: each Node's spec.podCIDR)."
on node-a podbox network config --cluster-cidr 10.0.0.0/14 --node-index 1
on node-b podbox network config --cluster-cidr 10.0.0.0/14 --node-index 2
say "Each node says what the network must know to reach its pods; the router learns it (Kubernetes: the route controller, or flannel host-gw)."
on node-a podbox network routes
on node-b podbox network routes
on router ip route add $(val node-a "$PODBOX" network routes)
on router ip route add $(val node-b "$PODBOX" network routes)
on router ip route
web_pod node-a pa
web_pod node-b pb
PA=$(pod_ip node-a pa); PB=$(pod_ip node-b pb)
say "Pod to pod across nodes, by pod IP. whoami prints the address the server saw: pa's own IP $PA — no NAT between pods."
on node-a podbox exec pa web -- timeout 5 wget -qO- "http://$PB/cgi-bin/whoami"
on node-b podbox exec pb web -- timeout 5 wget -qO- "http://$PA/cgi-bin/whoami"
say "To the outside host (not in 10.0.0.0/8) the pod is masqueraded: the host sees node A's 10.100.0.2."
on node-a podbox exec pa web -- timeout 5 wget -qO- "http://192.168.100.2/cgi-bin/whoami"

say "What node A looks like now, read from the kernel: interfaces, the bridge cbr0, each pod's veth pair with its IP and the processes in its namespace, and the routes."
on node-a podbox net show
say "Done. Everything (pods, nodes, router, outside host) is removed on exit."
