#!/usr/bin/env bash
# The main demo (figures F3/F4 of ../shared/scenarios.md): one node, one pod whose pause holds the
# network namespace, a web server and a client sharing localhost, and the port conflict two
# containers of one pod run into. Sets the machine up first; everything runs inside a throwaway
# node namespace and is removed at the end, also on failure or Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
source scripts/lib/node.sh
trap node_down_all EXIT

# show CMD...: print the command as typed on the node, run it there.
show() { on node-a "$@"; }
podbox() { show podbox "$@"; }
PATH=$(dirname "$PODBOX"):$PATH

node_up node-a
say "A throwaway node: its own network namespace, with only lo so far."
show ip -br link

say "Create a pod. podbox pins new net/ipc/uts namespaces, starts the pause process in them, and wires the net namespace to the node bridge cbr0 with a veth pair."
podbox pod create web
podbox pod ls
say "One pause process per pod: it does nothing but hold the namespaces (and reap zombies)."
show ps -o pid,rss,args
say "The node side: bridge cbr0 with the gateway address, the pod's veth attached to it."
show ip -br addr show cbr0
show ip -br link show master cbr0

say "Container 1: a web server on port 80, joined to the pod's namespaces."
podbox run --pod web --name server -d -- httpd -f -p 80 -h /var/www
sleep 0.3
say "Container 2: a client in the same pod reaches it over localhost."
podbox run --pod web --name client -- wget -qO- http://localhost:80
say "Both see the same network: one eth0 with the pod's IP, the default route via cbr0."
podbox exec web server -- ip -4 addr
podbox exec web server -- ip route
IP=$(in_node node-a "$PODBOX" pod inspect web | sed -n 's/.*"ip": "\(.*\)".*/\1/p' | head -1)
say "From the node, the pod is reachable at its IP $IP (the same for every container of the pod)."
show wget -qO- "http://$IP:80"

say "Container 3 wants port 80 too. They share one network namespace, so the bind fails, exactly as for two processes on one host."
podbox run --pod web --name second -- httpd -f -p 80
podbox ps

say "Kill the app container and run it again: the pod (pause, namespaces, IP) is unchanged."
PID=$(in_node node-a "$PODBOX" ps | awk '$2 == "server" {print $3}')
show kill -9 "$PID"
sleep 0.2
podbox rm web server
podbox run --pod web --name server -d -- httpd -f -p 80 -h /var/www
podbox pod ls

say "Remove the pod: containers, pause, veth, address, pins, state: all gone."
podbox pod rm -f web
podbox pod ls
show ip -br link
say "Done."
