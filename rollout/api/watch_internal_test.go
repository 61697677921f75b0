package api

import (
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
)

// TestWatcherFilter checks what a watch makes of the changes that reach
// it after its initial state: "name@version" Flights, uid u1 unless
// "name@version/uid".
func TestWatcherFilter(t *testing.T) {
	flight := func(spec string) *v1alpha1.Flight {
		name, rest, _ := strings.Cut(spec, "@")
		rv, uid, ok := strings.Cut(rest, "/")
		if !ok {
			uid = "u1"
		}
		return &v1alpha1.Flight{ObjectMeta: metav1.ObjectMeta{Namespace: "prod", Name: name, ResourceVersion: rv, UID: types.UID(uid)}}
	}
	tests := []struct {
		name     string
		resumeAt string
		initial  []string
		events   []string // "TYPE name@version[/uid]"
		want     []string // what is sent, with the resume point: "TYPE name@version>resume"
	}{
		{
			name:    "sends the initial state in version order, then newer changes",
			initial: []string{"b@5", "a@3"},
			events:  []string{"MODIFIED a@6"},
			want:    []string{"ADDED a@3>3", "ADDED b@5>5", "MODIFIED a@6>6"},
		},
		{
			name:    "skips changes the initial state already holds, or older ones",
			initial: []string{"a@5"},
			events:  []string{"MODIFIED a@4", "MODIFIED a@5", "MODIFIED a@7"},
			want:    []string{"ADDED a@5>5", "MODIFIED a@7>7"},
		},
		{
			name:    "sends a Flight the client has not seen as ADDED",
			initial: []string{"a@5"},
			events:  []string{"MODIFIED b@6"},
			want:    []string{"ADDED a@5>5", "ADDED b@6>6"},
		},
		{
			name:    "skips the deletion of a Flight the client never saw",
			initial: []string{"a@5"},
			events:  []string{"DELETED b@6", "DELETED a@7"},
			want:    []string{"ADDED a@5>5", "DELETED a@7>7"},
		},
		{
			name:    "tells a Flight created again under the same name from the old one",
			initial: []string{"a@5/u1"},
			events:  []string{"DELETED a@6/u0", "ADDED a@7/u2", "MODIFIED a@8/u2"},
			want:    []string{"ADDED a@5>5", "ADDED a@7>7", "MODIFIED a@8>8"},
		},
		{
			name:     "resuming, skips what the client has and sends the rest",
			resumeAt: "5",
			initial:  []string{"a@4", "b@5", "c@6"},
			events:   []string{"MODIFIED a@4", "MODIFIED b@7", "DELETED d@8", "DELETED e@3"},
			want:     []string{"ADDED c@6>6", "MODIFIED b@7>7", "DELETED d@8>8"},
		},
		{
			name:     "resuming with versions that do not compare, skips only the one equal",
			resumeAt: "x5",
			initial:  []string{"a@x4", "b@x5"},
			events:   []string{"MODIFIED b@x6"},
			want:     []string{"ADDED a@x4>x4", "MODIFIED b@x6>x6"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := &watcher{resumeAt: tc.resumeAt, progress: tc.resumeAt, seen: map[string]seenVersion{}}
			var initial []*v1alpha1.Flight
			for _, spec := range tc.initial {
				initial = append(initial, flight(spec))
			}
			var got []string
			// As run does with the initial state.
			for _, f := range w.initial(initial) {
				w.seen[f.Name] = seenVersion{uid: f.UID, rv: f.ResourceVersion}
				w.advance(f.ResourceVersion)
				got = append(got, "ADDED "+f.Name+"@"+f.ResourceVersion+">"+w.progress)
			}
			for _, spec := range tc.events {
				typ, fspec, _ := strings.Cut(spec, " ")
				out := w.filter(FlightEvent{Type: typ, Flight: flight(fspec)})
				if out != nil {
					got = append(got, strings.TrimPrefix(out.GetType().String(), "TYPE_")+" "+out.GetFlight().GetName()+"@"+out.GetFlight().GetResourceVersion()+">"+out.GetResourceVersion())
				}
			}
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("sent:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(tc.want, "\n  "))
			}
		})
	}
}

func TestNewestVersion(t *testing.T) {
	fl := func(rvs ...string) []*v1alpha1.Flight {
		var out []*v1alpha1.Flight
		for _, rv := range rvs {
			out = append(out, &v1alpha1.Flight{ObjectMeta: metav1.ObjectMeta{ResourceVersion: rv}})
		}
		return out
	}
	for _, tc := range []struct {
		rvs  []string
		want string
	}{
		{nil, ""},
		{[]string{"9", "10", "2"}, "10"},
		{[]string{"9", "x"}, ""},
	} {
		if got := newestVersion(fl(tc.rvs...)); got != tc.want {
			t.Errorf("newestVersion(%v) = %q, want %q", tc.rvs, got, tc.want)
		}
	}
}
