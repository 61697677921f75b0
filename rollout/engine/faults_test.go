package engine

// Fault injection below the e2e level (issue 13, "Bounded under faults"):
// the real Controller, its reconcile called directly per key (as its
// workers call it), over fake clientsets that fail writes on purpose, a
// fake router that fails routing writes, a fake clock and seeded
// randomness. Every run is deterministic and takes seconds.
//
// The fakes are given what a real API server has and client-go's fake
// object tracker lacks (apiServer below): UIDs, a resourceVersion that
// changes at every write (and not at a write that changes nothing), a
// generation that counts spec changes, and optimistic concurrency: a
// write (update, or patch carrying metadata.resourceVersion or
// metadata.uid) made from a stale read is refused with 409 Conflict, as
// is a delete whose preconditions do not hold. Without it the status
// write's fence (its resourceVersion) would not be exercised at all. A
// write to the status subresource changes the status alone, and a write
// to the object anything but its status.
//
// The informers are not started: the harness copies each Flight's
// objects from the fake API into their caches before the Flight is
// looked at, and an object that changed there queues the Flight again,
// as the informers' event handlers would. With staleRate (or frozen),
// each informer's watch lags on its own: its cache is left as it is for
// the round. Kubernetes' Deployment controller is played by
// kubeControllers: a Deployment that is not paused gets a ReplicaSet for
// its template (and its revision), and every Deployment's status says it
// is rolled out and available. The work queue is played by run: a look
// when an event queued the Flight or its requeue is due, and after an
// error the queue's backoff (retries: 5 ms doubling per Flight, at most a
// minute), in the fake clock's time.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes/fake"
	kubescheme "k8s.io/client-go/kubernetes/scheme"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"

	"github.com/fledgehq/fledge/analysis"
	"github.com/fledgehq/fledge/rollout"
	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
	fledgefake "github.com/fledgehq/fledge/rollout/client/clientset/versioned/fake"
	"github.com/fledgehq/fledge/traffic"
	"github.com/fledgehq/fledge/traffic/traffictest"
)

var (
	deploymentsGVR = appsv1.SchemeGroupVersion.WithResource("deployments")
	replicaSetsGVR = appsv1.SchemeGroupVersion.WithResource("replicasets")
	servicesGVR    = corev1.SchemeGroupVersion.WithResource("services")
)

// faultPolicies is the policy every Flight here follows: three steps, one
// metric (which the fake analysis passes, unless told otherwise).
const faultPolicies = `
policies:
  standard:
    steps: [10, 20, 50]
    interval: 1m
    metrics:
    - name: success-rate
      min: 0.99
`

// wantSteps are the canary weights the router is set to, in order, by a
// rollout of faultPolicies that is promoted: each step, all traffic on the
// canary while stable updates, then all back on stable.
var wantSteps = []int32{10, 20, 50, 100, 0}

// step is one record of a decision log, as compared.
type step struct {
	Verdict v1alpha1.Verdict
	Step    int32
	Weight  int32
}

// wantPromoted is the decision log of one revision's promotion under
// faultPolicies: each step once (the first follows from the start, see
// rollout.advance), in order, then the promotion.
var wantPromoted = []step{
	{v1alpha1.VerdictStart, -1, 0},
	{v1alpha1.VerdictAdvance, 1, 20},
	{v1alpha1.VerdictAdvance, 2, 50},
	{v1alpha1.VerdictPromote, 2, 100},
	{v1alpha1.VerdictPromoted, -1, 0},
}

// --- the fake API server ---

// apiServer is a reactor for fake clientsets that does what a real API
// server does and the fake's object tracker does not (see the top of the
// file). It serves creates, updates, patches (merge and JSON) and
// deletes itself, and reads from the tracker as the fake does. (It is
// given a plain tracker for the Kubernetes clientset too: the one
// fake.NewClientset keeps managed fields in builds a REST mapper at every
// write, which made the test of 300 Flights take 40 s.)
type apiServer struct {
	mu  sync.Mutex
	seq int64
	// touched counts successful writes by namespace: what a watch
	// would deliver.
	touched map[string]int64
	// conflicts counts the writes refused as stale.
	conflicts int
}

func newAPIServer() *apiServer { return &apiServer{touched: map[string]int64{}} }

func (s *apiServer) serve(f *k8stesting.Fake, tr k8stesting.ObjectTracker) {
	reads := k8stesting.ObjectReaction(tr)
	f.PrependReactor("*", "*", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if handled, obj, err := s.react(tr, a); handled {
			return handled, obj, err
		}
		return reads(a)
	})
}

func (s *apiServer) next() string {
	s.seq++
	return strconv.FormatInt(s.seq, 10)
}

func (s *apiServer) react(tr k8stesting.ObjectTracker, action k8stesting.Action) (bool, runtime.Object, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	gvr, ns := action.GetResource(), action.GetNamespace()
	switch a := action.(type) {
	case k8stesting.CreateActionImpl:
		if a.GetSubresource() != "" {
			return false, nil, nil
		}
		obj := a.GetObject().DeepCopyObject()
		m := accessor(obj)
		if m.GetUID() == "" {
			m.SetUID(types.UID("uid-" + s.next()))
		}
		m.SetResourceVersion(s.next())
		m.SetGeneration(1)
		if err := tr.Create(gvr, obj, ns); err != nil {
			return true, nil, err
		}
		s.touched[ns]++
		return true, obj.DeepCopyObject(), nil
	case k8stesting.UpdateActionImpl:
		obj := a.GetObject().DeepCopyObject()
		cur, err := tr.Get(gvr, ns, accessor(obj).GetName())
		if err != nil {
			return true, nil, err
		}
		return s.write(tr, gvr, ns, cur, obj, a.GetSubresource())
	case k8stesting.PatchActionImpl:
		cur, err := tr.Get(gvr, ns, a.GetName())
		if err != nil {
			return true, nil, err
		}
		raw, err := json.Marshal(cur)
		if err != nil {
			return true, nil, err
		}
		var patched []byte
		switch a.GetPatchType() {
		case types.MergePatchType:
			patched, err = jsonpatch.MergePatch(raw, a.GetPatch())
		case types.JSONPatchType:
			var p jsonpatch.Patch
			if p, err = jsonpatch.DecodePatch(a.GetPatch()); err == nil {
				patched, err = p.Apply(raw)
			}
		default:
			return true, nil, fmt.Errorf("this fake API server serves no %s patch", a.GetPatchType())
		}
		if err != nil {
			// As the API server answers a failed test operation.
			return true, nil, apierrors.NewGenericServerResponse(422, "patch", gvr.GroupResource(), a.GetName(), err.Error(), 0, false)
		}
		obj := newEmpty(cur)
		if err := json.Unmarshal(patched, obj); err != nil {
			return true, nil, apierrors.NewBadRequest(err.Error())
		}
		return s.write(tr, gvr, ns, cur, obj, a.GetSubresource())
	case k8stesting.DeleteActionImpl:
		cur, err := tr.Get(gvr, ns, a.GetName())
		if err != nil {
			return true, nil, err
		}
		if p := a.DeleteOptions.Preconditions; p != nil {
			m := accessor(cur)
			if p.UID != nil && *p.UID != m.GetUID() || p.ResourceVersion != nil && *p.ResourceVersion != m.GetResourceVersion() {
				s.conflicts++
				return true, nil, apierrors.NewConflict(gvr.GroupResource(), a.GetName(), errors.New("the precondition does not hold"))
			}
		}
		if err := tr.Delete(gvr, ns, a.GetName()); err != nil {
			return true, nil, err
		}
		s.touched[ns]++
		return true, nil, nil
	}
	return false, nil, nil
}

// write stores obj over cur, as the API server would: refused if obj
// names another resourceVersion or UID than cur's; the status alone from
// a status write, all but the status from any other; a new
// resourceVersion, and the generation counting changes of spec.
func (s *apiServer) write(tr k8stesting.ObjectTracker, gvr schema.GroupVersionResource, ns string, cur, obj runtime.Object, subresource string) (bool, runtime.Object, error) {
	cm, m := accessor(cur), accessor(obj)
	if rv, uid := m.GetResourceVersion(), m.GetUID(); rv != "" && rv != cm.GetResourceVersion() || uid != "" && uid != cm.GetUID() {
		s.conflicts++
		return true, nil, apierrors.NewConflict(gvr.GroupResource(), cm.GetName(),
			errors.New("the object has been modified; please apply your changes to the latest version and try again"))
	}
	before, after := fields(cur), fields(obj)
	var next map[string]any
	if subresource == "status" {
		next = fields(cur)
		next["status"] = after["status"]
	} else {
		next = after
		next["status"] = before["status"]
	}
	if next["status"] == nil {
		delete(next, "status")
	}
	out := newEmpty(cur)
	b, _ := json.Marshal(next)
	if err := json.Unmarshal(b, out); err != nil {
		return true, nil, apierrors.NewBadRequest(err.Error())
	}
	om := accessor(out)
	om.SetUID(cm.GetUID())
	om.SetCreationTimestamp(cm.GetCreationTimestamp())
	om.SetResourceVersion(cm.GetResourceVersion())
	om.SetGeneration(cm.GetGeneration())
	if reflect.DeepEqual(fields(out), before) {
		// Nothing changed: nothing is written, and no watch hears of it.
		return true, cur, nil
	}
	om.SetResourceVersion(s.next())
	if !reflect.DeepEqual(before["spec"], next["spec"]) {
		om.SetGeneration(cm.GetGeneration() + 1)
	}
	if err := tr.Update(gvr, out, ns); err != nil {
		return true, nil, err
	}
	s.touched[ns]++
	return true, out.DeepCopyObject(), nil
}

func (s *apiServer) writes(ns string) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.touched[ns]
}

func accessor(obj runtime.Object) metav1.Object {
	m, err := meta.Accessor(obj)
	if err != nil {
		panic(err)
	}
	return m
}

func newEmpty(obj runtime.Object) runtime.Object {
	return reflect.New(reflect.TypeOf(obj).Elem()).Interface().(runtime.Object)
}

// fields is obj as JSON's maps.
func fields(obj runtime.Object) map[string]any {
	b, err := json.Marshal(obj)
	if err != nil {
		panic(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		panic(err)
	}
	return m
}

// --- faults ---

// apiFaults fails API requests on purpose. It is the first reactor of
// both clientsets; requests the test itself makes (as a person, or as
// Kubernetes' controllers) are never failed.
type apiFaults struct {
	mu    sync.Mutex
	off   bool
	rules []faultRule
	// injected counts the failures injected, by "verb resource/subresource code".
	injected map[string]int
}

// faultRule fails the requests it matches when fail returns an error.
type faultRule struct {
	match func(k8stesting.Action) bool
	fail  func(k8stesting.Action) error
	// served: the request is served first, and only its answer lost.
	served bool
}

// serve injects the faults into fk's requests; do serves one for real.
func (f *apiFaults) serve(fk *k8stesting.Fake, do func(k8stesting.Action) error) {
	fk.PrependReactor("*", "*", func(a k8stesting.Action) (bool, runtime.Object, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.off {
			return false, nil, nil
		}
		for _, r := range f.rules {
			if !r.match(a) {
				continue
			}
			if err := r.fail(a); err != nil {
				if r.served {
					if served := do(a); served != nil {
						return true, nil, served
					}
				}
				if f.injected == nil {
					f.injected = map[string]int{}
				}
				what := a.GetVerb() + " " + a.GetResource().Resource
				if sub := a.GetSubresource(); sub != "" {
					what += "/" + sub
				}
				code := int32(0)
				if st, ok := err.(apierrors.APIStatus); ok {
					code = st.Status().Code
				}
				f.injected[fmt.Sprintf("%s %d", what, code)]++
				return true, nil, err
			}
		}
		return false, nil, nil
	})
}

func (f *apiFaults) setOff(off bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.off = off
}

func (f *apiFaults) summary() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	keys := make([]string, 0, len(f.injected))
	for k := range f.injected {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s: %d", k, f.injected[k])
	}
	return strings.Join(parts, ", ")
}

func isWrite(a k8stesting.Action) bool {
	switch a.GetVerb() {
	case "create", "update", "patch", "delete", "deletecollection":
		return true
	}
	return false
}

func tooManyRequests(a k8stesting.Action) error {
	return apierrors.NewTooManyRequests("too many requests, please try again later", 1)
}

func conflict(a k8stesting.Action) error {
	name := ""
	if p, ok := a.(k8stesting.PatchAction); ok {
		name = p.GetName()
	}
	return apierrors.NewConflict(a.GetResource().GroupResource(), name, errors.New("the object has been modified; please apply your changes to the latest version and try again"))
}

// faultyRouter is the in-memory router, whose writes (SetWeights and
// Ensure) fail a given fraction of the time with 500 or 429, as the Istio
// API would. Some 500s are ambiguous: the write was applied and only its
// answer was lost.
type faultyRouter struct {
	*traffictest.Router
	mu  sync.Mutex
	rng *rand.Rand
	// rate is the fraction of writes that fail; of those, ambiguous is the
	// fraction of 500s that were applied all the same.
	rate, ambiguous float64
	// failSetWeights fails that many SetWeights calls to come, whatever
	// the rate.
	failSetWeights int
	failed         map[string]int
}

func (r *faultyRouter) fault(method string) (applied bool, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.failed == nil {
		r.failed = map[string]int{}
	}
	if method == "SetWeights" && r.failSetWeights > 0 {
		r.failSetWeights--
		r.failed[method+" 500"]++
		return false, apierrors.NewInternalError(errors.New("etcdserver: request timed out"))
	}
	if r.rate == 0 || r.rng.Float64() >= r.rate {
		return false, nil
	}
	if r.rng.Intn(2) == 0 {
		r.failed[method+" 429"]++
		return false, apierrors.NewTooManyRequests("too many requests, please try again later", 1)
	}
	applied = r.rng.Float64() < r.ambiguous
	if applied {
		r.failed[method+" 500 (applied)"]++
	} else {
		r.failed[method+" 500"]++
	}
	return applied, apierrors.NewInternalError(errors.New("etcdserver: request timed out"))
}

func (r *faultyRouter) SetWeights(ctx context.Context, t traffic.Target, w traffic.Weights) error {
	applied, err := r.fault("SetWeights")
	if err == nil || applied {
		if e := r.Router.SetWeights(ctx, t, w); e != nil {
			return e
		}
	}
	return err
}

func (r *faultyRouter) Ensure(ctx context.Context, t traffic.Target) error {
	applied, err := r.fault("Ensure")
	if err == nil || applied {
		if e := r.Router.Ensure(ctx, t); e != nil {
			return e
		}
	}
	return err
}

// failures counts the failures injected into method.
func (r *faultyRouter) failures(method string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for k, v := range r.failed {
		if strings.HasPrefix(k, method+" ") {
			n += v
		}
	}
	return n
}

func (r *faultyRouter) summary() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	keys := make([]string, 0, len(r.failed))
	for k := range r.failed {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s: %d", k, r.failed[k])
	}
	return strings.Join(parts, ", ")
}

// eventLog counts the Events recorded, by object and reason, and by
// object and message.
type eventLog struct {
	mu        sync.Mutex
	byReason  map[string]int
	byMessage map[string]int
}

func (e *eventLog) Event(obj runtime.Object, eventtype, reason, message string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.byReason == nil {
		e.byReason, e.byMessage = map[string]int{}, map[string]int{}
	}
	m := accessor(obj)
	key := m.GetNamespace() + "/" + m.GetName()
	e.byReason[key+" "+reason]++
	e.byMessage[key+" "+reason+": "+message]++
}

func (e *eventLog) Eventf(obj runtime.Object, eventtype, reason, format string, args ...any) {
	e.Event(obj, eventtype, reason, fmt.Sprintf(format, args...))
}

func (e *eventLog) AnnotatedEventf(obj runtime.Object, _ map[string]string, eventtype, reason, format string, args ...any) {
	e.Event(obj, eventtype, reason, fmt.Sprintf(format, args...))
}

func (e *eventLog) count(key, reason string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.byReason[key+" "+reason]
}

// repeated lists the Events recorded more than once for key.
func (e *eventLog) repeated(key string) []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []string
	for m, n := range e.byMessage {
		if n > 1 && strings.HasPrefix(m, key+" ") {
			out = append(out, fmt.Sprintf("%dx %s", n, m))
		}
	}
	sort.Strings(out)
	return out
}

// --- the world ---

// world is a controller, the fakes it runs against, and the scheduler
// that stands in for its work queue.
type world struct {
	t      testing.TB
	ctx    context.Context
	kube   *fake.Clientset
	fledge *fledgefake.Clientset
	// kubeObjects and flightObjects are what the API stores.
	kubeObjects, flightObjects k8stesting.ObjectTracker
	api                        *apiServer
	faults                     *apiFaults
	router                     *faultyRouter
	clock                      *clocktesting.FakeClock
	events                     *eventLog
	c                          *Controller
	// analyze decides each check (default: all pass).
	analyze func(vars analysis.Vars, m analysis.Metric) analysis.Outcome

	rng *rand.Rand
	// staleRate is the fraction of looks at which the Flight's objects
	// are not copied to the caches first: their watch lags.
	staleRate float64
	// frozen names the informers whose watch is held (and
	// "kube-controllers" if Kubernetes' controllers are): what they
	// cache stays as it is until it is released.
	frozen map[string]bool

	keys    []string
	flights map[string]*flightRun
	// simSeen is, by namespace, the writes kubeControllers has seen.
	simSeen map[string]int64
	// since is when the phase being run began (doneAt counts from it).
	since time.Time
	// looks records, if set, what each look of the engine asked the API
	// server, the router and Prometheus (cost_test.go).
	looks *lookLog
}

// flightRun is one key's state in the scheduler, and its figures.
type flightRun struct {
	key        string
	due        time.Time // an AddAfter pending (zero: none)
	dirty      bool      // an event queued it
	failures   int       // in a row, for the per-item backoff
	cacheSeen  int64     // the namespace's writes the caches have seen
	doneSeen   int64     // the namespace's writes when done was last asked
	reconciles int
	errs       []string // the first few errors, for a failure's report
	errors     int
	doneAfter  int // reconciles until done, once it is
	doneAt     time.Duration
}

var start = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

func newWorld(t testing.TB, seed int64) *world {
	ps, err := rollout.ParseConfig([]byte(faultPolicies))
	if err != nil {
		t.Fatal(err)
	}
	w := &world{
		t: t, ctx: context.Background(),
		kube: fake.NewClientset(), fledge: fledgefake.NewSimpleClientset(),
		api: newAPIServer(), faults: &apiFaults{},
		router: &faultyRouter{Router: traffictest.NewRouter(), rng: rand.New(rand.NewSource(seed + 1))},
		clock:  clocktesting.NewFakeClock(start), events: &eventLog{}, since: start,
		rng:     rand.New(rand.NewSource(seed)),
		flights: map[string]*flightRun{}, simSeen: map[string]int64{}, frozen: map[string]bool{},
	}
	w.kubeObjects, w.flightObjects = k8stesting.NewObjectTracker(kubescheme.Scheme, kubescheme.Codecs.UniversalDecoder()), w.fledge.Tracker()
	w.api.serve(&w.kube.Fake, w.kubeObjects)
	w.api.serve(&w.fledge.Fake, w.flightObjects)
	w.faults.serve(&w.kube.Fake, func(a k8stesting.Action) error { _, _, err := w.api.react(w.kubeObjects, a); return err })
	w.faults.serve(&w.fledge.Fake, func(a k8stesting.Action) error { _, _, err := w.api.react(w.flightObjects, a); return err })
	w.c = NewController(ControllerConfig{
		Kube: w.kube, Fledge: w.fledge, Router: w.router, Policies: policyMap(ps),
		Recorder: w.events, Clock: w.clock, Logger: slog.New(slog.DiscardHandler),
		Analyze: func(_ context.Context, ms []analysis.Metric, vars analysis.Vars, at time.Time) []analysis.Check {
			out := make([]analysis.Check, 0, len(ms))
			w.looks.analyzed(ms)
			for _, m := range ms {
				outcome := analysis.Pass
				if w.analyze != nil {
					outcome = w.analyze(vars, m)
				}
				v := 1.0
				if outcome == analysis.Fail {
					v = 0.5
				}
				out = append(out, analysis.Check{Metric: m.Name, Value: &v, Threshold: ">= 0.99", Samples: 1000, Outcome: outcome, At: at})
			}
			return out
		},
	})
	// The caches are filled by hand (sync), never started.
	w.c.scopes.byNamespace[""] = w.c.scopes.newScope("", "")
	return w
}

// asUser runs fn with faults off: the test's own writes, as a person or
// as Kubernetes' controllers.
func (w *world) asUser(fn func()) {
	w.faults.setOff(true)
	defer w.faults.setOff(false)
	fn()
}

// addApp creates an opted-in Deployment "web" at image web:v1 with its
// Service, in namespace ns, and queues its Flight.
func (w *world) addApp(ns string) {
	labels := map[string]string{"app": "web"}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns, Annotations: map[string]string{rollout.AnnotationRollout: "standard"},
			Labels: map[string]string{"team": "shop"}},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(int32(2)),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "web:v1"}}},
			},
		},
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns},
		Spec: corev1.ServiceSpec{Selector: labels,
			Ports: []corev1.ServicePort{{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80, TargetPort: intstr.FromInt32(8080)}}},
	}
	w.asUser(func() {
		if _, err := w.kube.AppsV1().Deployments(ns).Create(w.ctx, d, metav1.CreateOptions{}); err != nil {
			w.t.Fatal(err)
		}
		if _, err := w.kube.CoreV1().Services(ns).Create(w.ctx, svc, metav1.CreateOptions{}); err != nil {
			w.t.Fatal(err)
		}
	})
	key := ns + "/web"
	w.keys = append(w.keys, key)
	w.flights[key] = &flightRun{key: key, dirty: true}
}

// setImage applies a new template to the app of ns, as a person would.
func (w *world) setImage(ns, image string) {
	w.asUser(func() {
		d, err := w.kube.AppsV1().Deployments(ns).Get(w.ctx, "web", metav1.GetOptions{})
		if err != nil {
			w.t.Fatal(err)
		}
		d.Spec.Template.Spec.Containers[0].Image = image
		w.since = w.clock.Now()
		if _, err := w.kube.AppsV1().Deployments(ns).Update(w.ctx, d, metav1.UpdateOptions{}); err != nil {
			w.t.Fatal(err)
		}
	})
}

// kubeControllers plays Kubernetes' Deployment controller, at once, in
// the namespaces written since it last looked.
func (w *world) kubeControllers() {
	w.asUser(func() {
		for _, key := range w.keys {
			ns, _, _ := cache.SplitMetaNamespaceKey(key)
			seen := w.api.writes(ns)
			if w.simSeen[ns] == seen || w.frozen["kube-controllers"] || w.staleRate > 0 && w.rng.Float64() < w.staleRate {
				continue // up to date, or its watch lags
			}
			w.simSeen[ns] = seen
			list, err := w.kubeObjects.List(deploymentsGVR, appsv1.SchemeGroupVersion.WithKind("Deployment"), ns)
			if err != nil {
				w.t.Fatal(err)
			}
			for i := range list.(*appsv1.DeploymentList).Items {
				w.rollOut(&list.(*appsv1.DeploymentList).Items[i])
			}
		}
	})
}

func (w *world) rollOut(d *appsv1.Deployment) {
	list, err := w.kubeObjects.List(replicaSetsGVR, appsv1.SchemeGroupVersion.WithKind("ReplicaSet"), d.Namespace)
	if err != nil {
		w.t.Fatal(err)
	}
	var sets []*appsv1.ReplicaSet
	for i := range list.(*appsv1.ReplicaSetList).Items {
		sets = append(sets, &list.(*appsv1.ReplicaSetList).Items[i])
	}
	newest := NewestReplicaSet(d, sets)
	hash := TemplateHash(d.Spec.Template)
	if !d.Spec.Paused && (newest == nil || TemplateHash(newest.Spec.Template) != hash) {
		rev := int64(1)
		if newest != nil {
			rev, _ = strconv.ParseInt(newest.Annotations[deploymentRevision], 10, 64)
			rev++
		}
		tmpl := *d.Spec.Template.DeepCopy()
		tmpl.Labels = map[string]string{appsv1.DefaultDeploymentUniqueLabelKey: hash}
		for k, v := range d.Spec.Template.Labels {
			tmpl.Labels[k] = v
		}
		rs := &appsv1.ReplicaSet{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s-%d", d.Name, rev), Namespace: d.Namespace, Labels: tmpl.Labels,
				Annotations:     map[string]string{deploymentRevision: strconv.FormatInt(rev, 10)},
				OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(d, appsv1.SchemeGroupVersion.WithKind("Deployment"))}},
			Spec: appsv1.ReplicaSetSpec{Replicas: d.Spec.Replicas, Template: tmpl},
		}
		if newest, err = w.kube.AppsV1().ReplicaSets(d.Namespace).Create(w.ctx, rs, metav1.CreateOptions{}); err != nil {
			w.t.Fatal(err)
		}
	}
	if newest != nil && d.Annotations[deploymentRevision] != newest.Annotations[deploymentRevision] {
		// As the Deployment controller does: the newest ReplicaSet's
		// revision on the Deployment.
		if d.Annotations == nil {
			d.Annotations = map[string]string{}
		}
		d.Annotations[deploymentRevision] = newest.Annotations[deploymentRevision]
		if d, err = w.kube.AppsV1().Deployments(d.Namespace).Update(w.ctx, d, metav1.UpdateOptions{}); err != nil {
			w.t.Fatal(err)
		}
	}
	want := ptr.Deref(d.Spec.Replicas, 1)
	st := appsv1.DeploymentStatus{ObservedGeneration: d.Generation, Replicas: want, AvailableReplicas: want, ReadyReplicas: want}
	if newest != nil && TemplateHash(newest.Spec.Template) == hash {
		st.UpdatedReplicas = want
	}
	if reflect.DeepEqual(st, d.Status) {
		return
	}
	d.Status = st
	if _, err := w.kube.AppsV1().Deployments(d.Namespace).UpdateStatus(w.ctx, d, metav1.UpdateOptions{}); err != nil {
		w.t.Fatal(err)
	}
}

// refresh copies the key's objects from the API to the caches, and
// reports whether any changed there (an informer event). With staleRate,
// each informer's watch lags on its own: its objects are left as they
// are, and complete is false.
func (w *world) refresh(key string) (changed, complete bool) {
	ns, name, _ := cache.SplitMetaNamespaceKey(key)
	complete = true
	lags := func(informer string) bool {
		if w.frozen[informer] || w.staleRate > 0 && w.rng.Float64() < w.staleRate {
			complete = false
			return true
		}
		return false
	}
	sync := func(idx cache.Indexer, tr k8stesting.ObjectTracker, gvr schema.GroupVersionResource, names ...string) {
		for _, name := range names {
			changed = syncObject(idx, tr, gvr, ns, name) || changed
		}
	}
	if !lags("deployments") {
		sync(w.c.scopes.of("").kube.Apps().V1().Deployments().Informer().GetIndexer(), w.kubeObjects, deploymentsGVR, name, name+CanarySuffix)
	}
	if !lags("services") {
		sync(w.c.scopes.of("").kube.Core().V1().Services().Informer().GetIndexer(), w.kubeObjects, servicesGVR, name, name+CanarySuffix, name+StableSuffix)
	}
	if !lags("flights") {
		sync(w.c.scopes.of("").flights.Fledge().V1alpha1().Flights().Informer().GetIndexer(), w.flightObjects, v1alpha1.FlightResource, name)
	}
	if !lags("replicasets") {
		sets := w.c.scopes.of("").kube.Apps().V1().ReplicaSets().Informer().GetIndexer()
		list, err := w.kubeObjects.List(replicaSetsGVR, appsv1.SchemeGroupVersion.WithKind("ReplicaSet"), ns)
		if err != nil {
			w.t.Fatal(err)
		}
		for i := range list.(*appsv1.ReplicaSetList).Items {
			rs := &list.(*appsv1.ReplicaSetList).Items[i]
			if cached, ok, _ := sets.GetByKey(ns + "/" + rs.Name); !ok || accessor(cached.(runtime.Object)).GetResourceVersion() != rs.ResourceVersion {
				_ = sets.Update(rs)
				changed = true
			}
		}
	}
	return changed, complete
}

func syncObject(idx cache.Indexer, tr k8stesting.ObjectTracker, gvr schema.GroupVersionResource, ns, name string) bool {
	cached, exists, _ := idx.GetByKey(ns + "/" + name)
	obj, err := tr.Get(gvr, ns, name)
	if apierrors.IsNotFound(err) {
		if exists {
			_ = idx.Delete(cached)
			return true
		}
		return false
	}
	if err != nil {
		panic(err)
	}
	if exists && accessor(cached.(runtime.Object)).GetResourceVersion() == accessor(obj).GetResourceVersion() {
		return false
	}
	_ = idx.Update(obj)
	return true
}

// tick is how long a round of reconciles takes, and a watch's latency:
// what is written in one round is seen in the next.
const tick = 50 * time.Millisecond

// run drives the controller as its workers would, in rounds, until done
// holds for every key or maxRounds is reached (which fails the test). In
// a round, each key is looked at (in a fixed order) if an event queued
// it or its requeue is due; between rounds the fake clock moves to the
// next thing due. It returns the rounds taken.
func (w *world) run(maxRounds int, done func(key string) bool) int {
	w.t.Helper()
	for _, k := range w.flights {
		// The figures are this run's.
		k.reconciles, k.errors, k.errs, k.doneAfter, k.doneAt, k.doneSeen = 0, 0, nil, 0, 0, -1
	}
	for round := 1; round <= maxRounds; round++ {
		if w.round(done) {
			return round
		}
		if !w.advance() {
			w.t.Fatalf("round %d: nothing due, nothing changing, and not done: wedged\n%s", round, w.report(done))
		}
	}
	w.t.Fatalf("not done after %d rounds\n%s", maxRounds, w.report(done))
	return 0
}

// runRounds runs n rounds, whatever happens.
func (w *world) runRounds(n int) {
	for range n {
		w.round(func(string) bool { return false })
		w.advance()
	}
}

// round is one round of run; it reports whether every key is done.
func (w *world) round(done func(key string) bool) bool {
	// The fakes remember every request: only what they serve counts.
	w.kube.ClearActions()
	w.fledge.ClearActions()
	w.kubeControllers()
	now := w.clock.Now()
	all := true
	for _, key := range w.keys {
		k := w.flights[key]
		ns, _, _ := cache.SplitMetaNamespaceKey(key)
		if seen := w.api.writes(ns); seen != k.cacheSeen {
			changed, complete := w.refresh(key)
			if complete {
				k.cacheSeen = seen
			}
			k.dirty = k.dirty || changed
		}
		due := !k.due.IsZero() && !now.Before(k.due)
		if k.dirty || due {
			w.reconcile(k, now, due)
		}
		if n := w.api.writes(ns); k.doneAfter == 0 && n != k.doneSeen {
			// (Whether it is done changes only with what is stored.)
			k.doneSeen = n
			if done(key) {
				k.doneAfter, k.doneAt = k.reconciles, now.Sub(w.since)
			}
		}
		all = all && k.doneAfter > 0
	}
	return all
}

// reconcile looks at one key as a worker does (next), with the work
// queue's requeues: per-item exponential backoff on errors (retries: 5ms
// doubling, at most a minute), AddAfter on a requeue.
func (w *world) reconcile(k *flightRun, now time.Time, due bool) {
	k.dirty = false
	if due {
		k.due = time.Time{}
	}
	k.reconciles++
	w.looks.begin(w, k.key)
	after, err := w.c.safeReconcile(w.ctx, k.key)
	w.looks.end(w)
	if err != nil {
		k.errors++
		if len(k.errs) < 8 {
			k.errs = append(k.errs, err.Error())
		}
		after = min(retryBase<<min(k.failures, 30), retryMax)
		k.failures++
	} else {
		k.failures = 0
	}
	if after > 0 && (k.due.IsZero() || now.Add(after).Before(k.due)) {
		k.due = now.Add(after)
	}
}

// advance moves the clock to what comes next: a tick if anything was
// written that the caches have not seen, else the earliest requeue. It
// reports whether anything is to come.
func (w *world) advance() bool {
	now := w.clock.Now()
	var next time.Time
	for _, key := range w.keys {
		k := w.flights[key]
		ns, _, _ := cache.SplitMetaNamespaceKey(key)
		if n := w.api.writes(ns); n != k.cacheSeen || n != w.simSeen[ns] {
			next = now.Add(tick)
			break
		}
	}
	for _, key := range w.keys {
		if due := w.flights[key].due; !due.IsZero() && (next.IsZero() || due.Before(next)) {
			next = due
		}
	}
	if next.IsZero() {
		return false
	}
	if next.After(now) {
		w.clock.SetTime(next)
	}
	return true
}

// report describes every key not done, for a failure.
func (w *world) report(done func(string) bool) string {
	var b strings.Builder
	shown := 0
	for _, key := range w.keys {
		k := w.flights[key]
		if k.doneAfter > 0 || done(key) {
			continue
		}
		if shown++; shown > 5 {
			fmt.Fprintf(&b, "...\n")
			break
		}
		f := w.flight(key)
		fmt.Fprintf(&b, "%s: %d reconciles, %d errors %q\n", key, k.reconciles, k.errors, k.errs)
		if f != nil {
			fmt.Fprintf(&b, "  phase %s step %d weight %d hold %+v: %s\n  log %v\n", f.Status.Phase, f.Status.Step, f.Status.CanaryWeight, f.Status.Hold, f.Status.Message, steps(f, ""))
		}
	}
	return b.String()
}

// flight reads a Flight from the API (nil if there is none).
func (w *world) flight(key string) *v1alpha1.Flight {
	ns, name, _ := cache.SplitMetaNamespaceKey(key)
	obj, err := w.flightObjects.Get(v1alpha1.FlightResource, ns, name)
	if err != nil {
		return nil
	}
	return obj.(*v1alpha1.Flight)
}

func (w *world) deployment(key string) *appsv1.Deployment {
	ns, name, _ := cache.SplitMetaNamespaceKey(key)
	obj, err := w.kubeObjects.Get(deploymentsGVR, ns, name)
	if err != nil {
		w.t.Fatal(err)
	}
	return obj.(*appsv1.Deployment)
}

func target(key string) traffic.Target {
	ns, name, _ := cache.SplitMetaNamespaceKey(key)
	return traffic.Target{Namespace: ns, Name: name}
}

// phaseIs is a done for run: the Flight is in phase p at revision rev
// (canary and, once promoted, stable).
func (w *world) phaseIs(p v1alpha1.Phase, rev string) func(string) bool {
	return func(key string) bool {
		f := w.flight(key)
		if f == nil || f.Status.Phase != p {
			return false
		}
		switch p {
		case v1alpha1.PhaseIdle:
			return true
		case v1alpha1.PhaseSucceeded:
			return f.Status.StableRevision == rev && f.Status.CanaryRevision == rev
		default:
			return f.Status.CanaryRevision == rev || f.Status.RejectedRevision == rev
		}
	}
}

// steps is the Flight's decision log for revision rev ("": all).
func steps(f *v1alpha1.Flight, rev string) []step {
	var out []step
	for _, r := range f.Status.Decisions {
		if rev == "" || r.Revision == rev {
			out = append(out, step{r.Verdict, r.Step, r.Weight})
		}
	}
	return out
}

// canaryWeights is the router's history for key, the canary's share of
// each SetWeights applied, with repeats in a row (a weight set again)
// collapsed.
func (w *world) canaryWeights(key string) []int32 {
	var out []int32
	for _, h := range w.router.History(target(key)) {
		if n := len(out); n == 0 || out[n-1] != h.Canary {
			out = append(out, h.Canary)
		}
	}
	return out
}

// normalized is a status with its instants blanked: what two runs of the
// same rollout must agree on, whatever the faults made them wait.
func normalized(st v1alpha1.FlightStatus) any {
	b, err := json.Marshal(st)
	if err != nil {
		panic(err)
	}
	var m any
	if err := json.Unmarshal(b, &m); err != nil {
		panic(err)
	}
	var blank func(v any) any
	blank = func(v any) any {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				v[k] = blank(x)
			}
		case []any:
			for i, x := range v {
				v[i] = blank(x)
			}
		case string:
			if _, err := time.Parse(time.RFC3339Nano, v); err == nil {
				return "<instant>"
			}
		}
		return v
	}
	return blank(m)
}

// reference is one app's run, fault free, from opt-in to the promotion
// of web:v2: what a faulty run's Flight must end up equal to, and the
// figures it is measured against.
type reference struct {
	rev    string
	status v1alpha1.FlightStatus
	// optIn and promote are the looks taken from opt-in to Idle and from
	// the new template to Succeeded; took is the latter's virtual time.
	optIn, promote int
	took           time.Duration
}

func promotedRevision(t *testing.T) reference {
	w := newWorld(t, 1)
	w.addApp("ref")
	key := "ref/web"
	w.run(100, w.phaseIs(v1alpha1.PhaseIdle, ""))
	ref := reference{optIn: w.flights[key].doneAfter}
	w.setImage("ref", "web:v2")
	ref.rev = TemplateHash(w.deployment(key).Spec.Template)
	w.run(1000, w.phaseIs(v1alpha1.PhaseSucceeded, ref.rev))
	f := w.flight(key)
	if got := steps(f, ref.rev); !slices.Equal(got, wantPromoted) {
		t.Fatalf("fault free: decision log %v, want %v", got, wantPromoted)
	}
	ref.status, ref.promote, ref.took = f.Status, w.flights[key].doneAfter, w.flights[key].doneAt
	return ref
}

// checkPromoted checks one Flight after its promotion: Succeeded, each
// step once and in order in its decision log and at the router, the
// status the fault-free run ends with, and nothing of the Flight or of
// the Deployment lost.
func (w *world) checkPromoted(t *testing.T, key string, ref reference) {
	t.Helper()
	f := w.flight(key)
	if f == nil {
		t.Fatalf("%s: no Flight", key)
	}
	if got := steps(f, ref.rev); !slices.Equal(got, wantPromoted) {
		t.Errorf("%s: decision log %v, want each step once: %v", key, got, wantPromoted)
	}
	if got := w.canaryWeights(key); !slices.Equal(got, wantSteps) {
		t.Errorf("%s: canary weights set %v, want %v (no step skipped, none higher before lower)", key, got, wantSteps)
	}
	if got, _ := w.router.Routed(target(key)); got != (traffic.Weights{Stable: 100}) {
		t.Errorf("%s: routing ends at %+v, want all on stable", key, got)
	}
	if diff := cmp.Diff(normalized(ref.status), normalized(f.Status)); diff != "" {
		t.Errorf("%s: status differs from the fault-free run's (-fault free +faulty):\n%s", key, diff)
	}
	// The Flight's own fields, which status writes must not touch.
	d := w.deployment(key)
	if f.Spec.Deployment != "web" || f.Spec.Policy != "standard" || f.Labels[LabelManagedBy] != managedBy ||
		!slices.Contains(f.Finalizers, FinalizerRelease) || !metav1.IsControlledBy(f, d) {
		t.Errorf("%s: Flight lost a field: spec %+v labels %v finalizers %v owners %+v", key, f.Spec, f.Labels, f.Finalizers, f.OwnerReferences)
	}
	// The Deployment: fledge changed its pause alone.
	if d.Annotations[rollout.AnnotationRollout] != "standard" || d.Labels["team"] != "shop" || !d.Spec.Paused ||
		d.Spec.Template.Spec.Containers[0].Image != "web:v2" || ptr.Deref(d.Spec.Replicas, 0) != 2 {
		t.Errorf("%s: Deployment after the promotion: annotations %v labels %v paused %t image %s replicas %d",
			key, d.Annotations, d.Labels, d.Spec.Paused, d.Spec.Template.Spec.Containers[0].Image, ptr.Deref(d.Spec.Replicas, 0))
	}
}

// TestStatusWritesThatConflictEveryOtherTimeLoseNothing: one rollout,
// from opt-in to promotion, while every other status write fails with
// 409 Conflict (the first, the third, ...). The status write is the
// commit point: a refused one applies nothing, and the next look decides
// again from what is stored. So each step is taken once, each Event is
// recorded once, and the Flight ends as a fault-free run's does.
func TestStatusWritesThatConflictEveryOtherTimeLoseNothing(t *testing.T) {
	ref := promotedRevision(t)
	rev := ref.rev

	w := newWorld(t, 2)
	statusWrites := 0
	w.faults.rules = []faultRule{{
		match: func(a k8stesting.Action) bool {
			return a.GetVerb() == "patch" && a.GetResource().Resource == "flights" && a.GetSubresource() == "status"
		},
		fail: func(a k8stesting.Action) error {
			if statusWrites++; statusWrites%2 == 1 {
				return conflict(a)
			}
			return nil
		},
	}}
	w.addApp("ref") // the same namespace as the reference: the same status
	key := "ref/web"
	w.run(100, w.phaseIs(v1alpha1.PhaseIdle, ""))
	w.setImage("ref", "web:v2")
	w.run(1000, w.phaseIs(v1alpha1.PhaseSucceeded, rev))

	w.checkPromoted(t, key, ref)
	k := w.flights[key]
	if k.errors == 0 || statusWrites < 2*len(wantPromoted) {
		t.Fatalf("%d status writes, %d failed looks: the faults were not injected", statusWrites, k.errors)
	}
	// Every Event once: none comes from a decision whose write failed.
	if rep := w.events.repeated(key); len(rep) > 0 {
		t.Errorf("Events recorded more than once: %q", rep)
	}
	for reason, want := range map[string]int{"Initialized": 1, "CanaryStarted": 1, "StepStarted": 3, "Promoting": 1, "Promoted": 1, "WeightsReasserted": 0} {
		if got := w.events.count(key, reason); got != want {
			t.Errorf("%d %s Events, want %d", got, reason, want)
		}
	}
	t.Logf("%d status writes, every other one refused (%s); %d looks, %d of them failed; %s virtual",
		statusWrites, w.faults.summary(), k.reconciles, k.errors, w.clock.Now().Sub(start))
}

// TestStatusWritesWhoseAnswerIsLostLoseNothing: every other status
// write is applied, and its answer lost (500): fledge takes it as failed
// and applies none of the decision's actions. The next look reads the
// status as written and re-derives what is missing (the weights, set
// back), so the rollout still takes each step once and ends as a
// fault-free run's. (The Events of the decisions whose answer was lost
// are lost with their actions: logged, not checked.)
func TestStatusWritesWhoseAnswerIsLostLoseNothing(t *testing.T) {
	ref := promotedRevision(t)
	w := newWorld(t, 2)
	statusWrites := 0
	w.faults.rules = []faultRule{{
		match: func(a k8stesting.Action) bool {
			return a.GetVerb() == "patch" && a.GetResource().Resource == "flights" && a.GetSubresource() == "status"
		},
		fail: func(a k8stesting.Action) error {
			if statusWrites++; statusWrites%2 == 1 {
				return apierrors.NewInternalError(errors.New("etcdserver: request timed out"))
			}
			return nil
		},
		served: true,
	}}
	w.addApp("ref")
	key := "ref/web"
	w.run(100, w.phaseIs(v1alpha1.PhaseIdle, ""))
	w.setImage("ref", "web:v2")
	w.run(1000, w.phaseIs(v1alpha1.PhaseSucceeded, ref.rev))
	w.checkPromoted(t, key, ref)
	if rep := w.events.repeated(key); len(rep) > 0 {
		t.Errorf("Events recorded more than once: %q", rep)
	}
	k := w.flights[key]
	if k.errors == 0 {
		t.Fatal("no look failed: the faults were not injected")
	}
	t.Logf("%d status writes, every other one's answer lost; %d looks, %d of them failed; Events: %v", statusWrites, k.reconciles, k.errors, w.events.byReason)
}

// TestRoutingWritesFailingWith500Or429AreRetried: routing writes
// (SetWeights, Ensure) fail half of the time, with 429 or 500, and a
// quarter of the 500s were applied all the same (only the answer was
// lost); 20 seeds each. Promoted: every weight is set in step order,
// never a step skipped nor a higher weight before a lower one, and the
// Flight ends as a fault-free run's. Rolled back (the check fails once
// the canary has 20%): all traffic reaches stable, and stays there.
func TestRoutingWritesFailingWith500Or429AreRetried(t *testing.T) {
	const seeds, rate, ambiguous = 20, 0.5, 0.25
	ref := promotedRevision(t)
	rev := ref.rev

	t.Run("promoted", func(t *testing.T) {
		var faults, looks, failed, reasserted int
		for seed := range int64(seeds) {
			w := newWorld(t, 100+seed)
			w.router.rate, w.router.ambiguous = rate, ambiguous
			w.addApp("ref")
			key := "ref/web"
			w.run(1000, w.phaseIs(v1alpha1.PhaseIdle, ""))
			w.setImage("ref", "web:v2")
			w.run(1000, w.phaseIs(v1alpha1.PhaseSucceeded, rev))
			w.checkPromoted(t, key, ref)
			if rep := w.events.repeated(key); len(rep) > 0 {
				t.Errorf("seed %d: Events recorded more than once: %q", seed, rep)
			}
			faults += w.router.failures("SetWeights")
			looks, failed = looks+w.flights[key].reconciles, failed+w.flights[key].errors
			reasserted += w.events.count(key, "WeightsReasserted")
			if t.Failed() {
				t.Fatalf("seed %d: router faults %s", seed, w.router.summary())
			}
		}
		if faults < seeds {
			t.Fatalf("%d SetWeights failures in %d rollouts: the faults were not injected", faults, seeds)
		}
		t.Logf("%d rollouts: %d SetWeights failures; %d looks from the new template to Succeeded, %d of them failed; %d weights set back", seeds, faults, looks, failed, reasserted)
	})

	t.Run("rolled back", func(t *testing.T) {
		var faults, looks, failed int
		for seed := range int64(seeds) {
			w := newWorld(t, 200+seed)
			w.router.rate, w.router.ambiguous = rate, ambiguous
			w.analyze = func(vars analysis.Vars, m analysis.Metric) analysis.Outcome {
				if got, _ := w.router.Routed(traffic.Target{Namespace: vars.Namespace, Name: vars.StableWorkload}); got.Canary >= 20 {
					return analysis.Fail
				}
				return analysis.Pass
			}
			w.addApp("ref")
			key := "ref/web"
			w.run(1000, w.phaseIs(v1alpha1.PhaseIdle, ""))
			w.setImage("ref", "web:v2")
			w.run(1000, w.phaseIs(v1alpha1.PhaseRolledBack, rev))

			f := w.flight(key)
			want := []step{{v1alpha1.VerdictStart, -1, 0}, {v1alpha1.VerdictAdvance, 1, 20}, {v1alpha1.VerdictRollback, 1, 20}}
			if got := steps(f, rev); !slices.Equal(got, want) {
				t.Errorf("seed %d: decision log %v, want %v", seed, got, want)
			}
			if f.Status.RejectedRevision != rev || f.Status.RollingBack != nil || f.Status.Hold != nil {
				t.Errorf("seed %d: rejected %q, rolling back %+v, hold %+v: want %s rejected and nothing pending", seed, f.Status.RejectedRevision, f.Status.RollingBack, f.Status.Hold, rev)
			}
			if got := w.canaryWeights(key); !slices.Equal(got, []int32{10, 20, 0}) {
				t.Errorf("seed %d: canary weights set %v, want [10 20 0]: up in step order, then back to stable and nothing else", seed, got)
			}
			if got, _ := w.router.Routed(target(key)); got != (traffic.Weights{Stable: 100}) {
				t.Errorf("seed %d: routing ends at %+v, want all on stable", seed, got)
			}
			if n := w.events.count(key, rollout.EventRolledBack); n != 1 {
				t.Errorf("seed %d: %d RolledBack Events, want 1", seed, n)
			}
			if d := w.deployment(key); !d.Spec.Paused || d.Status.UpdatedReplicas != 0 {
				t.Errorf("seed %d: stable paused %t, %d replicas updated to the rejected template: want it held at the old one", seed, d.Spec.Paused, d.Status.UpdatedReplicas)
			}
			faults += w.router.failures("SetWeights")
			looks, failed = looks+w.flights[key].reconciles, failed+w.flights[key].errors
			if t.Failed() {
				t.Fatalf("seed %d: router faults %s", seed, w.router.summary())
			}
		}
		if faults < seeds {
			t.Fatalf("%d SetWeights failures in %d rollouts: the faults were not injected", faults, seeds)
		}
		t.Logf("%d rollbacks: %d SetWeights failures; %d looks from the new template to RolledBack, %d of them failed", seeds, faults, looks, failed)
	})
}

// TestALookFromAStaleFlightChangesNothing: the Flight's watch lags one
// write (its own last status write, Finalize), while the Deployment's
// is up to date: paused again by that write, and not yet observed by
// Kubernetes' Deployment controller. Decided from the stale Flight
// (UpdateStable), the status would not change, so there would be no
// status write to fence the actions; and the actions (all traffic to the
// canary again, stable unpaused) contradict the stored status. They must
// not be applied: an unpaused stable would roll a template pushed
// meanwhile out without a canary.
func TestALookFromAStaleFlightChangesNothing(t *testing.T) {
	ref := promotedRevision(t)
	rev := ref.rev
	w := newWorld(t, 6)
	w.addApp("ref")
	key := "ref/web"
	w.run(100, w.phaseIs(v1alpha1.PhaseIdle, ""))
	w.setImage("ref", "web:v2")
	w.run(1000, func(key string) bool { return w.flight(key).Status.PromotionStage == v1alpha1.StageFinalize })
	if got := w.canaryWeights(key); !slices.Equal(got, []int32{10, 20, 50, 100, 0}) || !w.deployment(key).Spec.Paused {
		t.Fatalf("at Finalize: canary weights %v, paused %t; want [10 20 50 100 0], paused", got, w.deployment(key).Spec.Paused)
	}
	// The write to Finalize is not in the Flight cache yet; the pause is
	// in the Deployment cache, and not yet observed by Kubernetes. This
	// replica does not know the write was its own (it took over from the
	// one that wrote it, or restarted): a look reads the stale cache.
	w.c.exec.own.forget(key)
	w.frozen["flights"], w.frozen["kube-controllers"] = true, true
	w.runRounds(3)
	if got := w.canaryWeights(key); !slices.Equal(got, []int32{10, 20, 50, 100, 0}) || !w.deployment(key).Spec.Paused {
		t.Errorf("after looks from the stale Flight: canary weights %v, paused %t; want [10 20 50 100 0], paused: nothing applied", got, w.deployment(key).Spec.Paused)
	}
	if w.flights[key].reconciles == 0 {
		t.Fatal("the Flight was not looked at while its cache was stale")
	}
	delete(w.frozen, "flights")
	delete(w.frozen, "kube-controllers")
	w.run(1000, w.phaseIs(v1alpha1.PhaseSucceeded, rev))
	w.checkPromoted(t, key, ref)
}

// TestATakeOverWaitsForTheReplicaSetCache: the ReplicaSets' watch lags
// the Deployments': the Deployment says it is rolled out (its newest
// ReplicaSet's revision on it, its status settled), and the cache knows
// no ReplicaSet of it yet. fledge must not take it over at an unknown
// revision: Idle with no stable revision, the next look would canary the
// very template stable runs (in the test of 300 Flights, seed 11, one
// such canary was at 10% when the new template came, and restarted).
func TestATakeOverWaitsForTheReplicaSetCache(t *testing.T) {
	ref := promotedRevision(t)
	w := newWorld(t, 7)
	w.frozen["replicasets"] = true
	w.addApp("ref")
	key := "ref/web"
	w.runRounds(20)
	if f := w.flight(key); f != nil && f.Status.Phase != v1alpha1.PhaseInitializing {
		t.Errorf("taken over while no ReplicaSet of the Deployment is known: phase %s, stable revision %q", f.Status.Phase, f.Status.StableRevision)
	}
	delete(w.frozen, "replicasets")
	w.run(100, w.phaseIs(v1alpha1.PhaseIdle, ""))
	v1 := TemplateHash(w.deployment(key).Spec.Template)
	if f := w.flight(key); f.Status.StableRevision != v1 || len(f.Status.Decisions) != 0 {
		t.Fatalf("Idle at stable revision %q with decisions %v, want %s and none", f.Status.StableRevision, steps(f, ""), v1)
	}
	w.setImage("ref", "web:v2")
	w.run(1000, w.phaseIs(v1alpha1.PhaseSucceeded, ref.rev))
	w.checkPromoted(t, key, ref)
}

// TestFailedRoutingWritesAreNotTakenForAnotherWriter: the first step's
// SetWeights fails 6 times in a row (500), then the router answers
// again. Nobody else wrote the routing: it reads 0% because fledge's own
// writes failed. Before Observed.RoutingWriteFailed, each failed write
// was followed by a look that found the routing not as decided and
// counted a reassert (drift); after 3 in a row fledge held with
// OtherWriter ("Have the other writer leave fledge's routing alone") and
// waited 30 s, doubling. In the test of 300 Flights under 30% 429s,
// seeds 13, 31 and 41 met it: one Flight took 11, 29 and 39 minutes
// instead of about 4.
func TestFailedRoutingWritesAreNotTakenForAnotherWriter(t *testing.T) {
	ref := promotedRevision(t)
	w := newWorld(t, 8)
	w.addApp("ref")
	key := "ref/web"
	w.run(100, w.phaseIs(v1alpha1.PhaseIdle, ""))
	w.setImage("ref", "web:v2")
	w.router.failSetWeights = 6
	w.run(1000, w.phaseIs(v1alpha1.PhaseSucceeded, ref.rev))
	w.checkPromoted(t, key, ref)
	if n := w.events.count(key, "Held"); n != 0 {
		t.Errorf("%d Held Events (%v): fledge's own failed writes were taken for another writer", n, w.events.byMessage)
	}
	if took := w.flights[key].doneAt; took > ref.took+time.Minute {
		t.Errorf("Succeeded after %s, a fault-free rollout after %s", took, ref.took)
	}
}

// TestAFewHundredFlightsUnder30PercentAPI429s: 300 apps opted in, then
// each given a new template, while 30% of all writes fail with 429:
// status writes, Deployment and Service writes, creates, deletes, and
// routing writes (which go to the API server too, as VirtualServices).
// Besides, each informer's watch (and Kubernetes' Deployment controller)
// lags a round one time in ten, so status writes also meet real 409s
// from the resourceVersion check. Every Flight ends Succeeded with each
// step once, equal to a fault-free run's, within the bounds below. The
// retries go through the work queue's rate limit as in fledge (5 ms per
// Flight doubling, at most a minute).
//
// The bounds, per Flight, from its new template to Succeeded: at most 4
// times the looks of a fault-free rollout, and at most 10 minutes when a
// fault-free one takes 3 (three 1-minute steps). A look that writes k
// times fails with probability 1-0.7^k; a Flight's retries back off up
// to a minute each, which is most of the time above 3 minutes (they
// competed for an overall 10 a second, client-go's default, until that
// was dropped). Measured (seed 5): see the log. (Seeds 13, 31 and 41 exceeded
// them, one Flight each, by 11, 29 and 39 minutes, until fledge's own
// failed SetWeights stopped counting as another writer's changes: see
// TestFailedRoutingWritesAreNotTakenForAnotherWriter. They pass now.)
func TestAFewHundredFlightsUnder30PercentAPI429s(t *testing.T) {
	const (
		apps = 300
		rate = 0.3
		// A safety net: the bounds are on looks and time, below.
		maxRounds = 20000
		maxTime   = 10 * time.Minute
	)
	ref := promotedRevision(t)
	maxLooks := 4 * ref.promote

	w := newWorld(t, 5)
	w.staleRate = 0.1
	w.router.rate = rate
	w.faults.rules = []faultRule{{
		match: isWrite,
		fail: func(a k8stesting.Action) error {
			if w.rng.Float64() < rate {
				return tooManyRequests(a)
			}
			return nil
		},
	}}
	for i := range apps {
		w.addApp(fmt.Sprintf("ref%03d", i))
	}
	began := time.Now()
	r1 := w.run(maxRounds, w.phaseIs(v1alpha1.PhaseIdle, ""))
	opted := w.perFlight()
	for _, key := range w.keys {
		ns, _, _ := cache.SplitMetaNamespaceKey(key)
		w.setImage(ns, "web:v2")
	}
	r2 := w.run(maxRounds, w.phaseIs(v1alpha1.PhaseSucceeded, ref.rev))
	rolled := w.perFlight()

	for _, key := range w.keys {
		w.checkPromoted(t, key, ref)
		if rep := w.events.repeated(key); len(rep) > 0 {
			t.Errorf("%s: Events recorded more than once: %q", key, rep)
		}
		if k := w.flights[key]; k.doneAfter > maxLooks || k.doneAt > maxTime {
			t.Errorf("%s: Succeeded after %d looks and %s, want at most %d and %s", key, k.doneAfter, k.doneAt, maxLooks, maxTime)
		}
	}
	t.Logf("%d Flights, %.0f%% of writes failing with 429, watches lagging 10%% of the time; %s real time", apps, rate*100, time.Since(began).Round(time.Millisecond))
	t.Logf("injected: API %s; router %s; %d writes refused as stale by the resourceVersion check", w.faults.summary(), w.router.summary(), w.api.conflicts)
	t.Logf("fault free: %d looks from opt-in to Idle; %d looks and %s from the new template to Succeeded", ref.optIn, ref.promote, ref.took)
	t.Logf("opt-in to Idle: %d rounds; looks per Flight p50 %d, p90 %d, max %d (failed: p50 %d, max %d); virtual time p50 %s, max %s",
		r1, opted.p(50, looks), opted.p(90, looks), opted.p(100, looks), opted.p(50, failed), opted.p(100, failed), opted.pt(50), opted.pt(100))
	t.Logf("new template to Succeeded: %d rounds; looks per Flight p50 %d, p90 %d, max %d, bound %d (failed: p50 %d, max %d); virtual time p50 %s, max %s, bound %s",
		r2, rolled.p(50, looks), rolled.p(90, looks), rolled.p(100, looks), maxLooks, rolled.p(50, failed), rolled.p(100, failed), rolled.pt(50), rolled.pt(100), maxTime)
}

// figures are the Flights' figures of one run.
type figures []flightRun

func (w *world) perFlight() figures {
	out := make(figures, 0, len(w.keys))
	for _, key := range w.keys {
		out = append(out, *w.flights[key])
	}
	return out
}

func looks(f flightRun) int  { return f.doneAfter }
func failed(f flightRun) int { return f.errors }

// p is the q-th percentile (100: the maximum) of what.
func (fs figures) p(q int, what func(flightRun) int) int {
	v := make([]int, len(fs))
	for i, f := range fs {
		v[i] = what(f)
	}
	slices.Sort(v)
	return v[min(len(v)-1, len(v)*q/100)]
}

// pt is the q-th percentile of the virtual time until done.
func (fs figures) pt(q int) time.Duration {
	v := make([]time.Duration, len(fs))
	for i, f := range fs {
		v[i] = f.doneAt
	}
	slices.Sort(v)
	return v[min(len(v)-1, len(v)*q/100)]
}
