package deploy

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	k8syaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// kustomization holds the fields deploy/k8s/kustomization.yaml may use;
// strict decoding rejects any other.
type kustomization struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Namespace  string `json:"namespace"`
	Labels     []struct {
		Pairs            map[string]string `json:"pairs"`
		IncludeSelectors bool              `json:"includeSelectors"`
	} `json:"labels"`
	Resources []string         `json:"resources"`
	Images    []kustomizeImage `json:"images"`
}

type kustomizeImage struct {
	Name    string `json:"name"`
	NewName string `json:"newName"`
	NewTag  string `json:"newTag"`
}

// strictDecoder decodes into the official API types and fails on unknown or
// duplicated fields, as "kubectl apply --validate=strict" would.
func strictDecoder(t *testing.T) runtime.Decoder {
	t.Helper()
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{
		corev1.AddToScheme, appsv1.AddToScheme, batchv1.AddToScheme,
		policyv1.AddToScheme, autoscalingv2.AddToScheme,
	} {
		require.NoError(t, add(scheme))
	}
	return serializer.NewCodecFactory(scheme, serializer.EnableStrict).UniversalDeserializer()
}

// documents splits a multi-document YAML file, dropping documents that hold
// only comments.
func documents(t *testing.T, raw []byte) [][]byte {
	t.Helper()
	r := k8syaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(raw)))
	var docs [][]byte
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return docs
		}
		require.NoError(t, err)
		var m map[string]any
		require.NoError(t, yaml.Unmarshal(doc, &m))
		if len(m) > 0 {
			docs = append(docs, doc)
		}
	}
}

// manifests is every object of the kustomization, decoded.
type manifests struct {
	deployments []*appsv1.Deployment
	services    []*corev1.Service
	pdbs        []*policyv1.PodDisruptionBudget
	hpas        []*autoscalingv2.HorizontalPodAutoscaler
	jobs        []*batchv1.Job
	configMaps  []*corev1.ConfigMap
	secrets     []*corev1.Secret
	accounts    []*corev1.ServiceAccount
	namespaces  []*corev1.Namespace
}

func loadManifests(t *testing.T) manifests {
	t.Helper()
	raw, err := os.ReadFile("k8s/kustomization.yaml")
	require.NoError(t, err)
	var k kustomization
	require.NoError(t, yaml.UnmarshalStrict(raw, &k), "k8s/kustomization.yaml")
	require.Equal(t, "kustomize.config.k8s.io/v1beta1", k.APIVersion)
	require.Equal(t, "Kustomization", k.Kind)
	require.NotEmpty(t, k.Namespace)
	require.True(t, slices.ContainsFunc(k.Images, func(i kustomizeImage) bool {
		return i.Name == "bazaar" && i.NewName != "" && i.NewTag != ""
	}), "the kustomization must set the bazaar image")

	// Every manifest in the folder is listed, so none is silently left out.
	files, err := filepath.Glob("k8s/*.yaml")
	require.NoError(t, err)
	var onDisk []string
	for _, f := range files {
		if base := filepath.Base(f); base != "kustomization.yaml" {
			onDisk = append(onDisk, base)
		}
	}
	require.ElementsMatch(t, onDisk, k.Resources, "k8s/kustomization.yaml resources and the files in k8s/")

	dec := strictDecoder(t)
	var m manifests
	for _, res := range k.Resources {
		raw, err := os.ReadFile(filepath.Join("k8s", res))
		require.NoError(t, err)
		docs := documents(t, raw)
		require.NotEmpty(t, docs, "%s holds no object", res)
		for i, doc := range docs {
			obj, gvk, err := dec.Decode(doc, nil, nil)
			require.NoError(t, err, "%s document %d", res, i+1)
			switch o := obj.(type) {
			case *appsv1.Deployment:
				m.deployments = append(m.deployments, o)
			case *corev1.Service:
				m.services = append(m.services, o)
			case *policyv1.PodDisruptionBudget:
				m.pdbs = append(m.pdbs, o)
			case *autoscalingv2.HorizontalPodAutoscaler:
				m.hpas = append(m.hpas, o)
			case *batchv1.Job:
				m.jobs = append(m.jobs, o)
			case *corev1.ConfigMap:
				m.configMaps = append(m.configMaps, o)
			case *corev1.Secret:
				m.secrets = append(m.secrets, o)
			case *corev1.ServiceAccount:
				m.accounts = append(m.accounts, o)
			case *corev1.Namespace:
				m.namespaces = append(m.namespaces, o)
			default:
				t.Fatalf("%s document %d: unexpected kind %s", res, i+1, gvk)
			}
		}
	}
	return m
}

func TestKubernetesManifestsDecodeStrictly(t *testing.T) {
	t.Parallel()
	m := loadManifests(t)
	require.Len(t, m.deployments, 4)
	require.Len(t, m.jobs, 1)
	require.Len(t, m.configMaps, 1)
	require.Len(t, m.secrets, 1)
	require.Len(t, m.hpas, 1)
}

// The decoder really is strict: the check above would pass anything otherwise.
func TestStrictDecoderRejectsMistakes(t *testing.T) {
	t.Parallel()
	dec := strictDecoder(t)
	tests := map[string]string{
		"unknown field": `
apiVersion: v1
kind: ConfigMap
metadata: {name: x}
dataa: {A: b}`,
		"misplaced field": `
apiVersion: apps/v1
kind: Deployment
metadata: {name: x}
spec:
  selector: {matchLabels: {a: b}}
  template:
    metadata: {labels: {a: b}}
    spec:
      containers:
        - name: c
          image: i
          livenessProbe: {path: /healthz}`,
		"duplicate field": `
apiVersion: v1
kind: ConfigMap
metadata: {name: x}
data: {A: b}
data: {A: c}`,
		"wrong type": `
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: x}
spec: {minAvailable: [1]}`,
		"unknown kind": `
apiVersion: apps/v1
kind: Deploymnet
metadata: {name: x}`,
	}
	for name, doc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, _, err := dec.Decode([]byte(doc), nil, nil)
			require.Error(t, err)
		})
	}
}

func TestKubernetesWorkloads(t *testing.T) {
	t.Parallel()
	m := loadManifests(t)
	known := knownEnv(t)

	require.Len(t, m.configMaps, 1)
	cm := m.configMaps[0]
	require.Len(t, m.secrets, 1)
	secret := m.secrets[0]
	for k := range cm.Data {
		require.True(t, known[k], "ConfigMap %s sets %s, which bazaar does not read", cm.Name, k)
	}
	for k := range secret.StringData {
		require.True(t, known[k], "Secret %s sets %s, which bazaar does not read", secret.Name, k)
	}
	for _, k := range []string{"DATABASE_URL", "REDIS_URL", "BAZAAR_ADMIN_TOKEN"} {
		require.Contains(t, secret.StringData, k, "Secret %s", secret.Name)
	}
	shutdown, err := time.ParseDuration(cm.Data["BAZAAR_SHUTDOWN_TIMEOUT"])
	require.NoError(t, err, "ConfigMap BAZAAR_SHUTDOWN_TIMEOUT")

	roles := map[string]*appsv1.Deployment{}
	for _, d := range m.deployments {
		t.Run(d.Name, func(t *testing.T) {
			sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
			require.NoError(t, err)
			require.True(t, sel.Matches(labels.Set(d.Spec.Template.Labels)), "selector does not match the pod template")

			pod := d.Spec.Template.Spec
			checkPod(t, pod, cm.Name, secret.Name, known)
			require.Len(t, pod.Containers, 1)
			c := pod.Containers[0]
			require.NotEmpty(t, c.Args, "the role is the first argument")
			roles[c.Args[0]] = d

			require.True(t, slices.ContainsFunc(c.Ports, func(p corev1.ContainerPort) bool { return p.Name == "http" && p.ContainerPort == 8080 }),
				"container port http:8080 (BAZAAR_HTTP_ADDR %s)", cm.Data["BAZAAR_HTTP_ADDR"])
			// Prometheus scrapes /metrics on BAZAAR_METRICS_ADDR, a container
			// port of its own that no Service targets: under serve the API
			// port does not serve /metrics at all.
			require.Equal(t, ":9464", cm.Data["BAZAAR_METRICS_ADDR"], "ConfigMap BAZAAR_METRICS_ADDR")
			require.True(t, slices.ContainsFunc(c.Ports, func(p corev1.ContainerPort) bool { return p.Name == "metrics" && p.ContainerPort == 9464 }),
				"container port metrics:9464 (BAZAAR_METRICS_ADDR)")
			require.Equal(t, "9464", d.Spec.Template.Annotations["prometheus.io/port"], "scraped on the metrics port")
			require.Equal(t, "/metrics", d.Spec.Template.Annotations["prometheus.io/path"])
			require.NotNil(t, c.LivenessProbe, "liveness probe")
			require.NotNil(t, c.LivenessProbe.HTTPGet)
			require.Equal(t, "/healthz", c.LivenessProbe.HTTPGet.Path)
			require.Equal(t, "http", c.LivenessProbe.HTTPGet.Port.String())
			require.NotNil(t, c.ReadinessProbe, "readiness probe")
			require.NotNil(t, c.ReadinessProbe.HTTPGet)
			require.Equal(t, "/readyz", c.ReadinessProbe.HTTPGet.Path)
			require.Equal(t, "http", c.ReadinessProbe.HTTPGet.Port.String())

			// The pod must outlive the process's own shutdown (and any
			// preStop pause before it), or in-flight work is killed.
			var preStop time.Duration
			if c.Lifecycle != nil && c.Lifecycle.PreStop != nil && c.Lifecycle.PreStop.Sleep != nil {
				preStop = time.Duration(c.Lifecycle.PreStop.Sleep.Seconds) * time.Second
			}
			require.NotNil(t, pod.TerminationGracePeriodSeconds)
			grace := time.Duration(*pod.TerminationGracePeriodSeconds) * time.Second
			require.Greater(t, grace, shutdown+preStop, "terminationGracePeriodSeconds vs BAZAAR_SHUTDOWN_TIMEOUT + preStop")

			require.True(t, slices.ContainsFunc(m.pdbs, func(p *policyv1.PodDisruptionBudget) bool {
				s, err := metav1.LabelSelectorAsSelector(p.Spec.Selector)
				return err == nil && s.Matches(labels.Set(d.Spec.Template.Labels))
			}), "no PodDisruptionBudget covers %s", d.Name)
		})
	}
	for _, role := range []string{"serve", "work", "relay", "schedule"} {
		require.Contains(t, roles, role, "a Deployment per role")
	}
	if d := roles["serve"]; d != nil {
		require.NotNil(t, d.Spec.Replicas)
		require.GreaterOrEqual(t, *d.Spec.Replicas, int32(2), "two API pods at least")
	}

	for _, p := range m.pdbs {
		require.True(t, (p.Spec.MinAvailable == nil) != (p.Spec.MaxUnavailable == nil), "PodDisruptionBudget %s sets exactly one of minAvailable, maxUnavailable", p.Name)
		s, err := metav1.LabelSelectorAsSelector(p.Spec.Selector)
		require.NoError(t, err)
		require.True(t, slices.ContainsFunc(m.deployments, func(d *appsv1.Deployment) bool { return s.Matches(labels.Set(d.Spec.Template.Labels)) }),
			"PodDisruptionBudget %s selects no Deployment's pods", p.Name)
	}

	require.Len(t, m.hpas, 1)
	hpa := m.hpas[0]
	work := roles["work"]
	require.NotNil(t, work)
	require.Equal(t, "Deployment", hpa.Spec.ScaleTargetRef.Kind)
	require.Equal(t, work.Name, hpa.Spec.ScaleTargetRef.Name, "the HorizontalPodAutoscaler scales the workers")
	require.Nil(t, work.Spec.Replicas, "the autoscaler owns the workers' replica count; a fixed one would fight it on every apply")
	require.NotNil(t, hpa.Spec.MinReplicas)
	require.Less(t, *hpa.Spec.MinReplicas, hpa.Spec.MaxReplicas)
	require.NotEmpty(t, hpa.Spec.Metrics)

	for _, s := range m.services {
		require.True(t, slices.ContainsFunc(m.deployments, func(d *appsv1.Deployment) bool {
			return labels.SelectorFromSet(s.Spec.Selector).Matches(labels.Set(d.Spec.Template.Labels))
		}), "Service %s selects no pods", s.Name)
		for _, p := range s.Spec.Ports {
			require.Equal(t, "http", p.TargetPort.String(), "Service %s targets the named port", s.Name)
		}
	}

	require.Len(t, m.jobs, 1)
	job := m.jobs[0]
	checkPod(t, job.Spec.Template.Spec, cm.Name, secret.Name, known)
	require.Equal(t, []string{"migrate", "up"}, job.Spec.Template.Spec.Containers[0].Args)
	require.Contains(t, []corev1.RestartPolicy{corev1.RestartPolicyOnFailure, corev1.RestartPolicyNever}, job.Spec.Template.Spec.RestartPolicy)

	require.Len(t, m.accounts, 1)
	require.Len(t, m.namespaces, 1)
}

// checkPod holds for every Bazaar pod: the bazaar image, configuration from
// the ConfigMap and Secret, requests and limits, and no privileges.
func checkPod(t *testing.T, pod corev1.PodSpec, configMap, secret string, known map[string]bool) {
	t.Helper()
	require.NotNil(t, pod.SecurityContext)
	require.NotNil(t, pod.SecurityContext.RunAsNonRoot)
	require.True(t, *pod.SecurityContext.RunAsNonRoot, "runAsNonRoot")
	require.NotNil(t, pod.AutomountServiceAccountToken)
	require.False(t, *pod.AutomountServiceAccountToken, "bazaar never calls the Kubernetes API")
	mounts := map[string]bool{}
	for _, v := range pod.Volumes {
		mounts[v.Name] = true
	}
	for _, c := range pod.Containers {
		require.Equal(t, "bazaar", c.Image, "container %s: the kustomization's images entry sets the real image", c.Name)
		var fromCM, fromSecret bool
		for _, e := range c.EnvFrom {
			fromCM = fromCM || (e.ConfigMapRef != nil && e.ConfigMapRef.Name == configMap)
			fromSecret = fromSecret || (e.SecretRef != nil && e.SecretRef.Name == secret)
		}
		require.True(t, fromCM, "container %s reads ConfigMap %s", c.Name, configMap)
		require.True(t, fromSecret, "container %s reads Secret %s", c.Name, secret)
		for _, e := range c.Env {
			require.True(t, known[e.Name], "container %s sets %s, which bazaar does not read", c.Name, e.Name)
		}
		for _, res := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			req, ok := c.Resources.Requests[res]
			require.True(t, ok, "container %s requests %s", c.Name, res)
			lim, ok := c.Resources.Limits[res]
			require.True(t, ok, "container %s limits %s", c.Name, res)
			require.LessOrEqual(t, req.Cmp(lim), 0, "container %s: %s request above its limit", c.Name, res)
		}
		sc := c.SecurityContext
		require.NotNil(t, sc, "container %s securityContext", c.Name)
		require.NotNil(t, sc.AllowPrivilegeEscalation)
		require.False(t, *sc.AllowPrivilegeEscalation)
		require.NotNil(t, sc.ReadOnlyRootFilesystem)
		require.True(t, *sc.ReadOnlyRootFilesystem)
		require.NotNil(t, sc.Capabilities)
		require.Equal(t, []corev1.Capability{"ALL"}, sc.Capabilities.Drop)
		for _, vm := range c.VolumeMounts {
			require.True(t, mounts[vm.Name], "container %s mounts unknown volume %s", c.Name, vm.Name)
		}
		require.False(t, strings.Contains(strings.Join(c.Command, " "), "sh"), "the image has no shell")
	}
}
