#!/usr/bin/env bash
# Volumes shared inside a pod (issue 14): the sidecar pattern — one container writes files into an
# emptyDir, another serves that directory over HTTP, a client in another pod fetches it by the pod's
# IP — plus an init container that prepares the directory first, and a secret on a tmpfs. Runs
# inside a throwaway node namespace and removes everything at the end, also on failure or Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
source scripts/lib/node.sh
trap node_down_all EXIT

show() { on node-a "$@"; }
podbox() { show podbox "$@"; }
PATH=$(dirname "$PODBOX"):$PATH

node_up node-a
say "The busybox root file system becomes the node's image 'busybox' (made here, never pulled)."
podbox image import "$PODBOX_SRC/rootfs" busybox
MANIFEST=$NODE_TMP/sidecar.yaml
cat > "$MANIFEST" <<'YAML'
apiVersion: v1
kind: Secret
metadata: {name: site-key}
stringData: {key: not-on-any-disk}
---
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  volumes:
  - {name: html, emptyDir: {}}
  - {name: key, secret: {secretName: site-key, defaultMode: 0400}}
  initContainers:
  - name: prepare
    image: busybox
    command: [sh, -c, 'echo "<h1>prepared by the init container</h1>" > /html/index.html']
    volumeMounts: [{name: html, mountPath: /html}]
  containers:
  - name: writer
    image: busybox
    command: [sh, -c, 'while true; do date >> /html/index.html; sleep 2; done']
    volumeMounts: [{name: html, mountPath: /html}]
  - name: server
    image: busybox
    command: [httpd, -f, -p, "80", -h, /www]
    volumeMounts:
    - {name: html, mountPath: /www, readOnly: true}
    - {name: key, mountPath: /etc/site}
YAML
say "A pod of two containers sharing one emptyDir volume, an init container that prepares it, and a secret."
show cat "$MANIFEST"
podbox pod apply -f "$MANIFEST"
say "The init container ran to completion first; the writer and the server run now."
podbox ps
sleep 2.5
IP=$(in_node node-a "$PODBOX" pod inspect web | sed -n 's/.*"ip": "\(.*\)".*/\1/p' | head -1)
say "A client in another pod fetches what the writer wrote and the server serves, by the pod's IP $IP."
podbox pod create client
podbox run --pod client --name get -- wget -qO- "http://$IP/index.html"
say "Both containers see the same directory; the server's mount is read-only."
podbox exec web writer -- ls -l /html
podbox exec web server -- touch /www/nope
say "The secret is a read-only file on a tmpfs of its own, never written to a disk."
podbox exec web server -- sh -c 'ls -l /etc/site; stat -f -c "file system: %T" /etc/site'
say "On the node, the emptyDir lives in the pod's state directory; pod rm removes it."
ID=$(in_node node-a "$PODBOX" pod inspect web | sed -n 's/.*"id": "\(.*\)".*/\1/p' | head -1)
show ls "$NODE_TMP/node-a/pods/$ID/volumes"
podbox pod rm -f web client
show ls "$NODE_TMP/node-a/pods"
say "Done."
