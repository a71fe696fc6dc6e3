//! `pod apply -f`: Kubernetes Pod manifests as kubectl, podman or a cluster write them, in JSON or
//! YAML, one or several documents (`---`) or a `kind: List`. Every field is classified in
//! `fields::FIELDS` (honoured, accepted and ignored, refused); unknown names are errors naming the
//! field's path and the nearest known name. What is honoured becomes a validated `PodSpec`.

pub mod fields;
pub mod generate;
pub mod objects;

mod convert;
mod doc;
mod handlers;
mod input;
mod volume_doc;

use convert::*;
use doc::*;
use handlers::*;
pub use input::{MAX_BYTES, MAX_DEPTH, parse, parse_all, read};
use volume_doc::*;

use std::path::Path;

use super::PodError;
use super::model::PodSpec;

fn invalid(field: &str, msg: impl Into<String>) -> PodError {
    invalid_at("", field, msg)
}

/// An error at `field` of the document labelled `doc` ("" when the manifest has one document).
pub(crate) fn invalid_at(doc: &str, field: &str, msg: impl Into<String>) -> PodError {
    PodError::Manifest { doc: doc.into(), field: field.into(), msg: msg.into() }
}

/// Where `seccompProfile: {type: Localhost}` profiles are found unless `pod apply --seccomp-root`
/// says otherwise (the kubelet's is /var/lib/kubelet/seccomp).
pub const SECCOMP_ROOT: &str = "/var/lib/podbox/seccomp";

/// Read the Localhost seccomp profiles the containers of `pods` name, below `root`: OCI seccomp
/// JSON (defaultAction, architectures, syscalls), the format of runc's and the kubelet's profiles.
/// Done before anything is created, so a missing or bad profile changes nothing.
pub fn load_seccomp_profiles(pods: &mut [PodSpec], root: &Path) -> Result<(), PodError> {
    for pod in pods {
        let doc = format!("pod {}", pod.name);
        let lists = [("initContainers", &mut pod.init_containers), ("containers", &mut pod.containers)];
        for (list, cs) in lists {
            for (i, c) in cs.iter_mut().enumerate() {
                let Some(rel) = &c.security.seccomp_localhost else { continue };
                let field = format!("spec.{list}[{i}].securityContext.seccompProfile.localhostProfile");
                let path = root.join(rel);
                let text = std::fs::read_to_string(&path).map_err(|e| invalid_at(&doc, &field, format!("reading {}: {e}", path.display())))?;
                let profile: oci_spec::runtime::LinuxSeccomp =
                    serde_json::from_str(&text).map_err(|e| invalid_at(&doc, &field, format!("{}: not an OCI seccomp profile: {e}", path.display())))?;
                c.security.seccomp_profile = Some(profile);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::RestartPolicy;
    use crate::container::probe::Action;
    use crate::network::{PortMapping, Protocol};
    use crate::pod::model::Resources;
    use crate::pod::volumes::{HostPathType, VolumeSource};

    const YAML: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: web
  labels: {app: web}
spec:
  hostname: webhost
  shareProcessNamespace: true
  restartPolicy: Never
  containers:
  - name: server
    image: busybox
    command: ["httpd", "-f"]
    args: ["-p", "80"]
    env: [{name: A, value: "1"}]
    workingDir: /tmp
    ports: [{containerPort: 80, hostPort: 8080}]
    resources:
      limits: {memory: 64Mi, cpu: 500m}
      requests: {memory: 32Mi, cpu: 0.25}
  - name: client
    command: ["sleep", "1000"]
    ports: [{containerPort: 53, protocol: UDP}]
"#;

    #[test]
    fn yaml_subset_is_understood() {
        let p = parse(YAML).unwrap();
        assert_eq!(p.name, "web");
        assert_eq!(p.hostname.as_deref(), Some("webhost"));
        assert!(p.share_pid);
        assert_eq!(p.containers[0].args, vec!["httpd", "-f", "-p", "80"]);
        assert_eq!(p.containers[0].env, vec![("A".to_string(), "1".to_string())]);
        assert_eq!(p.ports, vec![PortMapping { host_port: 8080, container_port: 80, protocol: Protocol::Tcp }]);
        assert_eq!(p.containers[1].ports, vec![(53, Protocol::Udp)]);
        assert_eq!(p.containers[0].resources, Resources { memory_bytes: Some(64 << 20), cpu_millis: Some(500), cpu_request_millis: Some(250), pids: None });
        assert_eq!(p.containers[1].resources, Resources::default());
        p.validate().unwrap();
    }

    #[test]
    fn json_is_accepted() {
        let p = parse(r#"{"metadata":{"name":"a"},"spec":{"containers":[{"name":"c","command":["true"]}]}}"#).unwrap();
        assert_eq!(p.containers[0].args, vec!["true"]);
    }

    fn field_of(text: &str) -> String {
        match parse(text) {
            Err(PodError::Manifest { field, .. }) => field,
            other => panic!("expected a manifest error, got {other:?}"),
        }
    }

    #[test]
    fn errors_name_the_field() {
        assert_eq!(field_of(&YAML.replace("workingDir", "workDir")), "spec.containers[0].workDir");
        assert!(parse(&YAML.replace("workingDir", "workDir")).unwrap_err().to_string().contains("did you mean `workingDir`"));
        assert_eq!(field_of(&YAML.replace("UDP", "SCTP")), "spec.containers[1].ports[0].protocol");
        assert_eq!(field_of(&YAML.replace("containerPort: 80", "containerPort: 99999")), "spec.containers[0].ports[0].containerPort");
        assert_eq!(field_of(&YAML.replace("restartPolicy: Never", "restartPolicy: Sometimes")), "spec.restartPolicy");
        assert_eq!(field_of(&YAML.replace("memory: 64Mi", "memory: 64Xi")), "spec.containers[0].resources.limits.memory");
        assert_eq!(field_of(&YAML.replace("cpu: 0.25", "cpu: 2")), "spec.containers[0].resources.requests.cpu");
        assert!(parse(&YAML.replace("cpu: 500m", "gpu: 1")).unwrap_err().to_string().contains("gpu"));
        assert_eq!(field_of("metadata: {name: a}\nspec: {containers: []}"), "spec.containers");
        assert_eq!(field_of("{\"metadata\":{},\"spec\":{\"containers\":[]}}"), "metadata");
        assert_eq!(field_of("kind: Deployment\nmetadata: {name: a}\nspec: {containers: []}"), "kind");
    }

    const KUBECTL_RUN: &str = include_str!("../../../tests/fixtures/kubectl-run.yaml");
    const KUBECTL_RUN_ARGS: &str = include_str!("../../../tests/fixtures/kubectl-run-args.yaml");
    const KUBECTL_GET: &str = include_str!("../../../tests/fixtures/kubectl-get-pod.yaml");
    const PODMAN: &str = include_str!("../../../tests/fixtures/podman-kube-generate.yaml");

    fn err_of(text: &str) -> (String, String, String) {
        match parse_all(text) {
            Err(e @ PodError::Manifest { .. }) => {
                let msg = e.to_string();
                let PodError::Manifest { doc, field, .. } = e else { unreachable!() };
                (doc, field, msg)
            }
            other => panic!("expected a manifest error, got {other:?}"),
        }
    }

    #[test]
    fn kubectl_run_output_is_accepted() {
        // Everything in it (creationTimestamp: null, resources: {}, dnsPolicy, status: {}) is
        // accepted; without a command the image's Entrypoint/Cmd runs.
        let p = parse(KUBECTL_RUN).unwrap();
        assert_eq!(p.containers[0].image.as_deref(), Some("busybox"));
        assert!(p.containers[0].args.is_empty() && p.containers[0].entrypoint.is_none());
        let p = parse(KUBECTL_RUN_ARGS).unwrap();
        assert_eq!(p.containers[0].args, ["httpd", "-f", "-p", "8080", "-h", "/var/www"]);
        assert_eq!(p.containers[0].image.as_deref(), Some("busybox"));
        assert_eq!(p.labels.get("run").map(String::as_str), Some("web"));
        assert!(p.ignored.iter().any(|i| i.starts_with("spec.dnsPolicy:")), "{:?}", p.ignored);
        assert!(p.ignored.iter().any(|i| i.starts_with("status:")), "{:?}", p.ignored);
        assert!(p.ignored.iter().any(|i| i.starts_with("metadata.creationTimestamp:")), "{:?}", p.ignored);
        p.validate().unwrap();
    }

    #[test]
    fn a_kubectl_get_dump_is_accepted_with_its_control_plane_fields_ignored() {
        let p = parse(KUBECTL_GET).unwrap();
        assert_eq!(p.name, "web");
        assert_eq!(p.containers.len(), 1);
        assert_eq!(p.containers[0].args[..2], ["sh", "-c"]);
        assert_eq!(p.containers[0].env, [("GREETING".to_string(), "hello".to_string())]);
        assert_eq!(p.containers[0].ports, [(8080, Protocol::Tcp)]);
        assert_eq!(p.containers[0].restart, RestartPolicy::Always);
        for f in ["metadata.managedFields", "metadata.uid", "metadata.resourceVersion", "spec.nodeName", "spec.tolerations", "status",
                  "spec.volumes[kube-api-access-*] and its volumeMounts", "spec.containers[].terminationMessagePath", "spec.serviceAccountName"] {
            assert!(p.ignored.iter().any(|i| i.starts_with(&format!("{f}:"))), "{f} not listed: {:?}", p.ignored);
        }
        // Clusters before 1.22 mounted a `default-token-*` secret instead.
        let old = KUBECTL_GET.replace("    projected:\n", "    secret:\n      secretName: default-token-x7k2p\n    xprojected:\n").replace("kube-api-access-x7k2p", "default-token-x7k2p");
        let old: String = old.split("    xprojected:\n").next().unwrap().to_string() + "status:\n  phase: Running\n";
        assert!(parse(&old).unwrap_or_else(|e| panic!("{e}")).ignored.iter().any(|i| i.contains("service-account token")));
        // Listed once, not once per occurrence.
        assert_eq!(p.ignored.iter().filter(|i| i.starts_with("spec.containers[].terminationMessagePath")).count(), 1);
        // A `kubectl get pods -o yaml` list of two such pods.
        let item = |name: &str| KUBECTL_GET.replace("name: web\n  namespace", &format!("name: {name}\n  namespace")).lines().map(|l| format!("  {l}\n")).collect::<String>();
        let list = format!("apiVersion: v1\nkind: List\nmetadata:\n  resourceVersion: \"\"\nitems:\n- {}- {}", &item("a")[2..], &item("b")[2..]);
        let pods = parse_all(&list).unwrap();
        assert_eq!(pods.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(), ["a", "b"]);
    }

    #[test]
    fn podman_kube_generate_output_is_accepted() {
        let p = parse(PODMAN).unwrap();
        assert_eq!(p.containers.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["server", "sidecar"]);
        assert_eq!(p.ports, [PortMapping { host_port: 8080, container_port: 80, protocol: Protocol::Tcp }]);
        assert_eq!(p.containers[0].working_dir.as_deref(), Some("/tmp"));
        assert_eq!(p.containers[1].resources.memory_bytes, Some(64 << 20));
        assert_eq!(p.containers[0].restart, RestartPolicy::Never);
        assert!(p.ignored.iter().any(|i| i.starts_with("metadata.annotations:")));
    }

    #[test]
    fn a_misspelt_field_names_the_one_meant() {
        let (_, field, msg) = err_of(&KUBECTL_RUN_ARGS.replace("  containers:", "  contianers:"));
        assert_eq!(field, "spec.contianers");
        assert!(msg.contains("did you mean `containers`"), "{msg}");
        let (_, field, msg) = err_of(&KUBECTL_RUN_ARGS.replace("containerPort", "containerport"));
        assert_eq!(field, "spec.containers[0].ports[0].containerport");
        assert!(msg.contains("`containerPort`"), "{msg}");
    }

    #[test]
    fn fields_that_change_what_runs_are_refused_by_name() {
        let pod = |extra: &str| format!("metadata: {{name: a}}\nspec:\n  containers:\n  - name: c\n    command: [sleep, '1']\n{extra}");
        for (extra, want) in [
            ("  volumes:\n  - name: data\n    persistentVolumeClaim: {claimName: data}\n", "spec.volumes[0].persistentVolumeClaim"),
            ("  volumes:\n  - name: data\n    nfs: {server: x, path: /}\n", "spec.volumes[0].nfs"),
            ("  volumes:\n  - {name: data, emptyDir: {}}\n  - {name: data, emptyDir: {}}\n", "spec.volumes[1].name"),
            ("  volumes:\n  - {name: data, emptyDir: {medium: HugePages}}\n", "spec.volumes[0].emptyDir.medium"),
            ("  volumes:\n  - {name: data, hostPath: {path: /x, type: Dir}}\n", "spec.volumes[0].hostPath.type"),
            ("  volumes:\n  - {name: data, emptyDir: {}, hostPath: {path: /x}}\n", "spec.volumes[0]"),
            ("  volumes:\n  - {name: data, configMap: {name: nope}}\n", "spec.volumes[0].configMap.name"),
            ("  ephemeralContainers:\n  - name: debug\n    image: busybox\n", "spec.ephemeralContainers"),
            ("  initContainers:\n  - name: init\n    commando: [true]\n", "spec.initContainers[0].commando"),
            ("  initContainers:\n  - name: c\n    command: ['true']\n", "spec.containers[0].name"),
            ("  initContainers:\n  - name: init\n    command: ['true']\n    volumeMounts: [{name: x, mountPath: /x}]\n", "spec.initContainers[0].volumeMounts[0].name"),
            ("  dnsPolicy: None\n", "spec.dnsPolicy"),
            ("    livenessProbe: {grpc: {port: 1}}\n", "spec.containers[0].livenessProbe.grpc"),
            ("    readinessProbe: {httpGet: {port: http}}\n", "spec.containers[0].readinessProbe.httpGet.port"),
            ("    startupProbe: {tcpSocket: {port: 80}, successThreshold: 2}\n", "spec.containers[0].startupProbe.successThreshold"),
            ("    readinessProbe: {tcpSocket: {port: 80}, exec: {command: [x]}}\n", "spec.containers[0].readinessProbe"),
            ("    readinessProbe: {exec: {command: [x]}, periodSeconds: 0}\n", "spec.containers[0].readinessProbe.periodSeconds"),
            ("    lifecycle: {preStop: {sleep: {seconds: 1}}}\n", "spec.containers[0].lifecycle.preStop.sleep"),
            ("    lifecycle: {preStop: {httpGet: {port: 80, httpHeaders: []}}}\n", "spec.containers[0].lifecycle.preStop.httpGet.httpHeaders"),
            ("    volumeMounts: [{name: data, mountPath: /data}]\n", "spec.containers[0].volumeMounts[0].name"),
            ("    volumeMounts: [{name: data, mountPath: /data, mountPropagation: Bidirectional}]\n", "spec.containers[0].volumeMounts[0].mountPropagation"),
            ("    env: [{name: A, valueFrom: {fieldRef: {fieldPath: status.podIP}}}]\n", "spec.containers[0].env[0].valueFrom"),
            ("    securityContext: {seccompProfile: {type: Localhost}}\n", "spec.containers[0].securityContext.seccompProfile.localhostProfile"),
            ("    securityContext: {seccompProfile: {type: Localhost, localhostProfile: ../x.json}}\n", "spec.containers[0].securityContext.seccompProfile.localhostProfile"),
            ("    securityContext: {seccompProfile: {type: Strict}}\n", "spec.containers[0].securityContext.seccompProfile.type"),
            ("    securityContext: {runAsNonRoot: true}\n", "spec.containers[0].securityContext.runAsNonRoot"),
            ("    securityContext: {capabilities: {add: [NET_FLY]}}\n", "spec.containers[0].securityContext.capabilities.add[0]"),
        ] {
            let (_, field, msg) = err_of(&pod(extra));
            assert_eq!(field, want, "{extra}: {msg}");
        }
        // ... and the same fields with the values podbox behaves as anyway are fine.
        let fine = "metadata: {name: a}\nspec:\n  hostNetwork: false\n  hostUsers: true\n  initContainers: []\n  dnsPolicy: Default\n  containers:\n  - name: c\n    command: [sleep, '1']\n    securityContext: {runAsUser: 1000, runAsNonRoot: true, allowPrivilegeEscalation: false, capabilities: {drop: [CAP_MKNOD]}, seccompProfile: {type: Unconfined}}\n";
        let p = parse(fine).unwrap_or_else(|e| panic!("{e}"));
        let c = &p.containers[0];
        assert_eq!(c.user, Some((1000, 0)));
        assert_eq!(c.security.cap_drop, ["CAP_MKNOD"]);
        assert!(c.security.seccomp_unconfined);
    }

    #[test]
    fn volumes_and_objects_are_understood() {
        let text = r#"
apiVersion: v1
kind: Pod
metadata: {name: p}
spec:
  volumes:
  - {name: shared, emptyDir: {}}
  - {name: cache, emptyDir: {medium: Memory, sizeLimit: 1Mi}}
  - {name: big, emptyDir: {sizeLimit: 1Gi}}
  - {name: typeless}
  - {name: node, hostPath: {path: /srv, type: DirectoryOrCreate}}
  - {name: cfg, configMap: {name: cfg, defaultMode: 0400, items: [{key: a, path: conf/a.txt}]}}
  - {name: sec, secret: {secretName: sec, defaultMode: 256}}
  containers:
  - name: c
    command: [sh]
    volumeMounts:
    - {name: shared, mountPath: /data, subPath: x, readOnly: true}
    - {name: node, mountPath: /node, mountPropagation: HostToContainer}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: cfg}
data: {a: hello}
---
apiVersion: v1
kind: Secret
metadata: {name: sec}
stringData: {pw: s3cret}
"#;
        let p = parse(text).unwrap_or_else(|e| panic!("{e}"));
        let src: Vec<&VolumeSource> = p.volumes.iter().map(|v| &v.source).collect();
        assert_eq!(src[0], &VolumeSource::EmptyDir { memory: false, size_limit: None });
        assert_eq!(src[1], &VolumeSource::EmptyDir { memory: true, size_limit: Some(1 << 20) });
        assert_eq!(src[2], &VolumeSource::EmptyDir { memory: false, size_limit: None });
        assert!(p.ignored.iter().any(|i| i.starts_with("spec.volumes[].emptyDir.sizeLimit (disk)")), "{:?}", p.ignored);
        assert_eq!(src[3], &VolumeSource::EmptyDir { memory: false, size_limit: None });
        assert_eq!(src[4], &VolumeSource::HostPath { path: "/srv".into(), kind: HostPathType::DirectoryOrCreate });
        let VolumeSource::Files { secret: false, files, .. } = src[5] else { panic!("{:?}", src[5]) };
        // YAML's 0400 is octal, as kubectl reads it.
        assert_eq!((files[0].path.as_str(), files[0].data.as_slice(), files[0].mode), ("conf/a.txt", &b"hello"[..], 0o400));
        let VolumeSource::Files { secret: true, files, .. } = src[6] else { panic!("{:?}", src[6]) };
        assert_eq!((files[0].path.as_str(), files[0].data.as_slice(), files[0].mode), ("pw", &b"s3cret"[..], 0o400));
        let m = &p.containers[0].mounts;
        assert_eq!((m[0].sub_path.as_deref(), m[0].read_only, m[1].host_to_container), (Some("x"), true, true));
    }

    #[test]
    fn probes_and_hooks_are_understood() {
        let p = parse(r#"
metadata: {name: p}
spec:
  terminationGracePeriodSeconds: 5
  containers:
  - name: c
    command: [sh]
    livenessProbe: {exec: {command: [cat, /tmp/ok]}, periodSeconds: 2, failureThreshold: 1, terminationGracePeriodSeconds: 3}
    readinessProbe: {httpGet: {path: /healthz, port: 8080, scheme: HTTP}, initialDelaySeconds: 1, successThreshold: 2}
    startupProbe: {tcpSocket: {port: 80}}
    lifecycle:
      postStart: {exec: {command: [touch, /tmp/ok]}}
      preStop: {httpGet: {port: 80, path: /quit}}
"#).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.grace_seconds, Some(5));
        let c = &p.containers[0];
        let l = c.probes.liveness.as_ref().unwrap();
        assert_eq!((&l.action, l.period, l.failure_threshold, l.timeout, l.success_threshold), (&Action::Exec(vec!["cat".into(), "/tmp/ok".into()]), 2, 1, 1, 1));
        let r = c.probes.readiness.as_ref().unwrap();
        assert_eq!((&r.action, r.initial_delay, r.success_threshold, r.period), (&Action::Http { host: None, port: 8080, path: "/healthz".into() }, 1, 2, 10));
        assert_eq!(c.probes.startup.as_ref().unwrap().action, Action::Tcp { host: None, port: 80 });
        assert_eq!(c.post_start, Some(Action::Exec(vec!["touch".into(), "/tmp/ok".into()])));
        assert_eq!(c.pre_stop, Some(Action::Http { host: None, port: 80, path: "/quit".into() }));
        let (_, field, _) = err_of("metadata: {name: p}\nspec:\n  initContainers:\n  - name: i\n    command: ['true']\n    readinessProbe: {exec: {command: [x]}}\n  containers:\n  - {name: c, command: [sh]}\n");
        assert_eq!(field, "spec.initContainers[0]");
    }

    #[test]
    fn several_documents_each_error_names_its_document() {
        let two = "metadata: {name: a}\nspec: {containers: [{name: c, command: [sleep, '1']}]}\n---\nmetadata: {name: b}\nspec: {containers: [{name: c, command: [sleep, '1']}]}\n---\n";
        let pods = parse_all(two).unwrap();
        assert_eq!(pods.len(), 2);
        let (doc, field, msg) = err_of(&two.replace("name: b}\nspec: {containers", "name: b}\nspec: {contaners"));
        assert_eq!((doc.as_str(), field.as_str()), ("document 2 (b)", "spec.contaners"), "{msg}");
        assert!(msg.starts_with("manifest document 2 (b), field spec.contaners:"), "{msg}");
        let (doc, field, _) = err_of(&format!("{two}apiVersion: v1\nkind: Service\nmetadata: {{name: svc}}\n"));
        assert_eq!((doc.as_str(), field.as_str()), ("document 3 (svc)", "kind"));
        let (doc, field, _) = err_of(&format!("{two}apiVersion: v1\nkind: Secret\nmetadata: {{name: s}}\ndata: {{a: '!'}}\n"));
        assert_eq!((doc.as_str(), field.as_str()), ("document 3 (s)", "data.a"));
        let (_, field, _) = err_of(&two.replace("name: b", "name: a"));
        assert_eq!(field, "metadata.name");
        let (_, field, _) = err_of("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: a}\n");
        assert_eq!(field, "apiVersion");
    }

    #[test]
    fn size_and_nesting_are_capped_before_parsing() {
        let big = format!("metadata: {{name: a}}\n#{}\n", "x".repeat(MAX_BYTES));
        assert!(matches!(parse_all(&big), Err(PodError::Invalid(m)) if m.contains("at most")));
        let t = std::time::Instant::now();
        let deep = "[".repeat(MAX_BYTES - 10);
        assert!(matches!(parse_all(&deep), Err(PodError::Invalid(m)) if m.contains("nested deeper than 100")));
        let deep_json = format!("{{\"a\":{}", "[".repeat(200_000));
        assert!(matches!(parse_all(&deep_json), Err(PodError::Invalid(m)) if m.contains("nested deeper")));
        assert!(t.elapsed() < std::time::Duration::from_secs(2), "{:?}", t.elapsed());
        // Block nesting without indentation (`- - - …`) and alias bombs are the parser's to stop
        // (its recursion and repetition limits), also in linear time.
        let t = std::time::Instant::now();
        assert!(parse_all(&"- ".repeat(MAX_BYTES / 2 - 10)).is_err());
        let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..40 {
            bomb += &format!("a{i}: &a{i} [{}]\n", vec![format!("*a{}", i - 1); 10].join(", "));
        }
        assert!(parse_all(&bomb).unwrap_err().to_string().contains("repetition limit"));
        assert!(t.elapsed() < std::time::Duration::from_secs(5), "{:?}", t.elapsed());
        // Brackets inside quoted scalars, comments and words do not count.
        let script = format!("metadata: {{name: a}}\n# {}\nspec:\n  containers:\n  - name: c\n    command:\n    - sh\n    - \"echo {}\"\n    - x[1]\n", "[".repeat(200), "{[".repeat(200));
        parse(&script).unwrap();
    }

    #[test]
    fn generate_round_trips_volumes_init_containers_probes_and_security() {
        use crate::pod::model::{ContainerRecord, ContainerState, ContainerStatus, PodPhase, PodRecord};
        const OBJECTS: &str = "---\nkind: ConfigMap\nmetadata: {name: cfg}\ndata: {a: x}\n---\nkind: Secret\nmetadata: {name: sec}\nstringData: {pw: y}\n";
        let text = format!("{}{OBJECTS}", r#"
metadata: {name: p}
spec:
  terminationGracePeriodSeconds: 7
  securityContext: {fsGroup: 2000, supplementalGroups: [4000], sysctls: [{name: net.ipv4.ping_group_range, value: "0 0"}]}
  volumes:
  - {name: a, emptyDir: {medium: Memory, sizeLimit: 1Mi}}
  - {name: b, hostPath: {path: /srv, type: DirectoryOrCreate}}
  - {name: c, configMap: {name: cfg, defaultMode: 0640, items: [{key: a, path: x/a, mode: 0600}]}}
  - {name: d, secret: {secretName: sec, optional: true}}
  initContainers:
  - {name: i, command: ['true'], volumeMounts: [{name: a, mountPath: /a}]}
  containers:
  - name: m
    command: [sleep, '1']
    volumeMounts: [{name: a, mountPath: /a, subPath: s, readOnly: true}, {name: b, mountPath: /b, mountPropagation: HostToContainer}]
    livenessProbe: {exec: {command: ['true']}, periodSeconds: 2}
    readinessProbe: {httpGet: {port: 80, path: /r}, successThreshold: 2}
    startupProbe: {tcpSocket: {port: 81, host: 127.0.0.1}}
    lifecycle: {postStart: {exec: {command: ['true']}}, preStop: {httpGet: {port: 80}}}
    securityContext: {allowPrivilegeEscalation: true, seccompProfile: {type: Localhost, localhostProfile: p.json}}
"#);
        let spec = parse(&text).unwrap_or_else(|e| panic!("{e}"));
        let rec = PodRecord {
            id: "x".into(), name: spec.name.clone(), hostname: spec.name.clone(), phase: PodPhase::Ready, created_at: String::new(),
            share_pid: false, network: true, ports: vec![], namespaces: Default::default(), node_namespaces: Default::default(), attachment: None, pause: None,
            declared_ports: Default::default(), labels: Default::default(), ignored_fields: vec![], volumes: spec.volumes.clone(), fs_group: spec.fs_group, grace_seconds: spec.grace_seconds, user_range: None, cgroup: None,
        };
        let statuses: Vec<ContainerStatus> = spec.init_containers.iter().chain(&spec.containers).map(|c| ContainerStatus {
            record: ContainerRecord { name: c.name.clone(), pod_id: "x".into(), args: c.args.clone(), created_at: String::new(), started_at: None, pid: None, monitor: None, start_error: None, spec: Some(c.clone()), image: None, image_digest: None, stop_signal: None, cgroup: None, awaiting_start: false },
            state: ContainerState::Running, exit: None, restarts: 0, last_exit: None, ready: true, probe: None,
        }).collect();
        let (doc, notes) = generate::pod_manifest(&rec, &statuses);
        // Two containers ran from --rootfs; two volumes' objects are not kept.
        assert_eq!(notes.len(), 4, "{notes:?}");
        let yaml = serde_yaml_ng::to_string(&doc).unwrap();
        let mut back = parse(&format!("{yaml}{OBJECTS}")).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
        let mut want = spec.clone();
        want.ignored.clear();
        back.ignored.clear();
        for c in want.containers.iter_mut().chain(want.init_containers.iter_mut()) {
            c.image = Some(generate::DEFAULT_IMAGE.into());
            c.entrypoint = Some(c.args.clone());
        }
        assert_eq!(back, want, "{yaml}");
    }

    #[test]
    fn host_namespaces_are_the_nodes_and_round_trip() {
        use crate::pod::model::{PodPhase, PodRecord};
        let yaml = "metadata: {name: h}\nspec:\n  hostNetwork: true\n  hostPID: true\n  hostIPC: true\n  containers:\n  - name: c\n    command: [sleep, '1']\n    ports: [{containerPort: 80, hostPort: 8080}]\n";
        let p = parse(yaml).unwrap_or_else(|e| panic!("{e}"));
        let want: std::collections::BTreeSet<String> = ["ipc", "net", "pid", "uts"].into_iter().map(String::from).collect();
        assert_eq!(p.node_namespaces, want);
        // No pod network; the host port is the node's own, not forwarded.
        assert!(!p.network && p.ports.is_empty() && p.ignored.iter().any(|i| i.contains("hostPort")), "{p:?}");
        p.validate().unwrap();
        let rec = PodRecord {
            id: "x".into(), name: "h".into(), hostname: "node".into(), phase: PodPhase::Ready, created_at: String::new(),
            share_pid: false, network: false, ports: vec![], namespaces: Default::default(), node_namespaces: want.clone(), attachment: None, pause: None,
            declared_ports: Default::default(), labels: Default::default(), ignored_fields: vec![], volumes: vec![], fs_group: None, grace_seconds: None, user_range: None, cgroup: None,
        };
        let (doc, _) = generate::pod_manifest(&rec, &[]);
        assert_eq!((doc["spec"]["hostNetwork"].as_bool(), doc["spec"]["hostPID"].as_bool(), doc["spec"]["hostIPC"].as_bool()), (Some(true), Some(true), Some(true)), "{doc}");
        // hostPID alone: a pod network, the node's PID namespace only.
        let p = parse(&yaml.replace("  hostNetwork: true\n", "").replace("  hostIPC: true\n", "")).unwrap();
        assert!(p.network && p.node_namespaces.len() == 1 && p.node_namespaces.contains("pid"), "{p:?}");
    }

    #[test]
    fn generate_round_trips_through_parse() {
        use crate::pod::model::{ContainerRecord, ContainerState, ContainerStatus, PodPhase, PodRecord};
        let spec = parse(YAML).unwrap();
        let rec = PodRecord {
            id: "x".into(), name: spec.name.clone(), hostname: spec.hostname.clone().unwrap(), phase: PodPhase::Ready, created_at: String::new(),
            share_pid: spec.share_pid, network: true, ports: spec.ports.clone(), namespaces: Default::default(), node_namespaces: Default::default(), attachment: None, pause: None,
            declared_ports: Default::default(), labels: spec.labels.clone(), ignored_fields: vec![], volumes: vec![], fs_group: None, grace_seconds: None, user_range: None, cgroup: None,
        };
        let statuses: Vec<ContainerStatus> = spec.containers.iter().map(|c| ContainerStatus {
            record: ContainerRecord { name: c.name.clone(), pod_id: "x".into(), args: c.args.clone(), created_at: String::new(), started_at: None, pid: None, monitor: None, start_error: None, spec: Some(c.clone()), image: None, image_digest: None, stop_signal: None, cgroup: None, awaiting_start: false },
            state: ContainerState::Running, exit: None, restarts: 0, last_exit: None, ready: true, probe: None,
        }).collect();
        let (doc, notes) = generate::pod_manifest(&rec, &statuses);
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(notes[0].contains("ran from --rootfs"), "{notes:?}");
        let yaml = serde_yaml_ng::to_string(&doc).unwrap();
        let mut back = parse(&yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
        // `args` come back as one command; the rest is the same.
        let mut want = spec.clone();
        want.ignored.clear();
        // A container without an image gets the default one.
        want.containers[1].image = Some(generate::DEFAULT_IMAGE.into());
        want.containers[1].entrypoint = Some(want.containers[1].args.clone());
        back.ignored.clear();
        assert_eq!(back, want, "{yaml}");
    }
}
