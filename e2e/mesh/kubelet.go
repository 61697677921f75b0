package mesh

import (
	"slices"
	"sort"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

// kubelet records, from the informers, what a kubelet goes by when it
// delivers ConfigMaps and Secrets to pods: the content of each object over
// time, as observed, and when each pod started. The routing table is built
// from a snapshot of it (see podConfig).
type kubelet struct {
	kubeletSync time.Duration
	now         func() time.Time

	mu      sync.Mutex
	history map[objectRef][]configVersion
	starts  map[podName]podStart
}

type podName struct{ namespace, name string }

type podStart struct {
	uid types.UID
	at  time.Time
}

func newKubelet(kubeletSync time.Duration) *kubelet {
	return &kubelet{
		kubeletSync: kubeletSync,
		now:         time.Now,
		history:     map[objectRef][]configVersion{},
		starts:      map[podName]podStart{},
	}
}

// saw records an object's content (v, without its time), or with missing
// that it is gone. initial marks the informer's initial list: what it
// holds counts as there before anything observed afterwards, so that the
// pods already running when the emulator starts see it. saw reports
// whether the content changed.
func (k *kubelet) saw(ref objectRef, v configVersion, missing, initial bool) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	h := k.history[ref]
	if missing {
		v = configVersion{}
	}
	switch {
	case len(h) > 0 && h[len(h)-1].hash == v.hash:
		return false // metadata only, or gone twice
	case len(h) == 0 && missing:
		return false // missing all along
	}
	v.observed = time.Time{}
	if !initial || len(h) > 0 {
		v.observed = k.now()
	}
	// The history is only appended to, and snapshots see no further than
	// their length.
	k.history[ref] = append(h, v)
	return true
}

// sawPod records when a pod started: when the emulator first saw it ready,
// or for a pod already ready in the informer's initial list, before
// anything the emulator observed (it started before the emulator did). A
// pod that turns unready and ready again keeps its start: its containers'
// environment is not read again.
func (k *kubelet) sawPod(pod *corev1.Pod, initial bool) {
	if !podReady(pod) {
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	name := podName{pod.Namespace, pod.Name}
	if s, ok := k.starts[name]; ok && s.uid == pod.UID {
		return
	}
	var at time.Time
	if !initial {
		at = k.now()
	}
	k.starts[name] = podStart{uid: pod.UID, at: at}
}

func (k *kubelet) forgetPod(namespace, name string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	delete(k.starts, podName{namespace, name})
}

// snapshot returns what a table built at now goes by. A ready pod of the
// list that no event has shown ready yet (a cache is updated before its
// handlers run) starts now. It forgets the versions no pod can see any
// more.
func (k *kubelet) snapshot(pods []*corev1.Pod, now time.Time) configSnapshot {
	k.mu.Lock()
	defer k.mu.Unlock()
	s := configSnapshot{
		history:     make(map[objectRef][]configVersion, len(k.history)),
		starts:      map[podKey]time.Time{},
		now:         now,
		kubeletSync: k.kubeletSync,
	}
	for _, pod := range pods {
		if !podReady(pod) {
			continue
		}
		name := podName{pod.Namespace, pod.Name}
		st, ok := k.starts[name]
		if !ok || st.uid != pod.UID {
			st = podStart{uid: pod.UID, at: now}
			k.starts[name] = st
		}
		s.starts[keyOfPod(pod)] = st.at
	}
	k.prune(now)
	for ref, h := range k.history {
		// Clipped, so that an append by the builder could not write into
		// the history's spare capacity.
		s.history[ref] = slices.Clip(h)
	}
	return s
}

// prune drops the versions that no pod can see any more: a version is
// seen from its observation to the next one's, by a pod that started in
// between, or through a live volume while now - kubeletSync is in between
// (which only moves forward, as do the starts of pods yet to come).
func (k *kubelet) prune(now time.Time) {
	horizon := now.Add(-k.kubeletSync)
	starts := make([]time.Time, 0, len(k.starts))
	for _, s := range k.starts {
		starts = append(starts, s.at)
	}
	slices.SortFunc(starts, func(x, y time.Time) int { return x.Compare(y) })
	startedWithin := func(from, to time.Time) bool {
		i := sort.Search(len(starts), func(i int) bool { return !starts[i].Before(from) })
		return i < len(starts) && starts[i].Before(to)
	}
	for ref, h := range k.history {
		seen := func(i int) bool {
			return i == len(h)-1 || h[i+1].observed.After(horizon) || startedWithin(h[i].observed, h[i+1].observed)
		}
		all := true
		for i := range h {
			all = all && seen(i)
		}
		if all {
			continue
		}
		// A new slice: snapshots hold the old one.
		var kept []configVersion
		for i := range h {
			if seen(i) {
				kept = append(kept, h[i])
			}
		}
		if len(kept) == 1 && kept[0].hash == "" {
			delete(k.history, ref) // missing and nothing older to see: as if never seen
			continue
		}
		k.history[ref] = kept
	}
}
